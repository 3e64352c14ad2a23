"""devmap_channel: send and receive on a devmap channel from Python (3.8+), no compiled extension.

The segment is any shared mapping of the channel's bytes: a POSIX shm name (what Node's
SharedMemory.create(name, ...) made), a file, or an mmap you already hold. The bytes and the protocol are
docs/channel-layout.md; this module follows it.

Atomic operations are the C library's own: libatomic's __atomic_load_4 / __atomic_store_4 /
__atomic_fetch_add_4 / __atomic_compare_exchange_4 (sequentially consistent) called through ctypes, and the
futex is the raw system call (syscall(2) through ctypes). libatomic.so.1 ships with GCC's runtime on every
mainstream Linux distribution.

    from devmap_channel import Channel
    ch = Channel.open("my-channel")          # /dev/shm/my-channel, created by Node
    ch.send(b"hello")                        # blocks while the ring is full (timeout=None)
    msg = ch.receive(timeout=1.0)            # bytes, or None on timeout / closed and drained
    ch.detach(); ch.close_mapping()

Errors: ChannelCorrupt (the segment's bytes cannot be right), ChannelBusy (no free slot), ChannelClosed (send
after close), ValueError (message too large). Supported: spsc, mpsc and broadcast, sending and receiving
(mpmc readers and overflow 'overwrite' writers are the Node side's).
"""
import ctypes
import ctypes.util
import mmap
import os
import struct
import time

__all__ = ["Channel", "ChannelCorrupt", "ChannelBusy", "ChannelClosed"]


class ChannelCorrupt(Exception):
    """The segment is corrupt (ERR_DEVMAP_CORRUPT on the Node side)."""


class ChannelBusy(Exception):
    """Every slot of the kind asked for is held by a live process."""


class ChannelClosed(Exception):
    """The channel is closed: nothing more can be sent."""


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_atomic_path = ctypes.util.find_library("atomic") or "libatomic.so.1"
_atomic = ctypes.CDLL(_atomic_path)
_SEQ_CST = 5
_load = _atomic.__atomic_load_4
_load.argtypes = [ctypes.c_void_p, ctypes.c_int]
_load.restype = ctypes.c_uint32
_store = _atomic.__atomic_store_4
_store.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int]
_store.restype = None
_fetch_add = _atomic.__atomic_fetch_add_4
_fetch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int]
_fetch_add.restype = ctypes.c_uint32
_cas = _atomic.__atomic_compare_exchange_4
_cas.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_bool, ctypes.c_int, ctypes.c_int]
_cas.restype = ctypes.c_bool

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}[os.uname().machine]
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1

MAGIC, VERSION = 0x48434D44, 1
H_MAGIC, H_VERSION, H_MODE, H_OVERFLOW, H_RING, H_MAX, H_WRITERS, H_READERS, H_DATA, H_TOTAL, H_READY, H_CLOSED = range(12)
TAIL, RESERVE_LOCK, LOCK_SLEEPERS, HEAD, RELEASE = 16, 17, 18, 32, 34
WRITE_SIGNAL, READER_SLEEPERS, READ_SIGNAL, WRITER_SLEEPERS = 48, 49, 64, 65
HEADER, SLOT = 320, 64
S_PID, S_START_LO, S_START_HI, S_GEN, S_CURSOR, S_FLAGS = range(6)
C_COUNT, C_BYTES, C_AUX1, C_AUX2 = 3, 4, 5, 6
RESERVED, COMMITTED, ABORTED = 1, 2, 3
LIVENESS = 0.010
GEN_MASK = 0x7FFFFF
MODES = {1: "spsc", 2: "mpsc", 3: "mpmc", 4: "broadcast"}
OVERFLOWS = {1: "block", 2: "overwrite", 3: "fail"}
U32 = 0xFFFFFFFF


def _span_of(length):
    return (16 + length + 7) & ~7


def _stat(pid):
    """(state letter, start time) from /proc/<pid>/stat, or None when unreadable."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            line = f.read().decode("latin-1")
    except OSError:
        return None
    fields = line[line.rfind(")") + 2:].split(" ")
    try:
        return fields[0], int(fields[22 - 3])
    except (IndexError, ValueError):
        return None


def _alive(pid, start):
    """Dead only on the kernel's word: no such pid, a zombie, or another start time."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    st = _stat(pid)
    if st is None:
        return True
    if st[0] in ("Z", "X"):
        return False
    return start == 0 or st[1] == start


class Channel:
    def __init__(self, mapping, length=None, spin=2000):
        """A handle on the channel at offset 0 of `mapping` (an mmap.mmap, MAP_SHARED, writable)."""
        self._mm = mapping
        self._len = len(mapping) if length is None else length
        self._anchor = ctypes.c_char.from_buffer(mapping)  # pins the buffer; released by close_mapping()
        self._base = ctypes.addressof(self._anchor)
        self._u32 = memoryview(mapping).cast("I")
        self._spin = spin
        self.writer_slot = -1
        self.reader_slot = -1
        self._pending = (None, 0.0)
        self._validate()

    @classmethod
    def open(cls, name, spin=2000):
        """Opens the POSIX shared memory object `name` (as shm_open("/" + name)) and attaches."""
        fd = os.open("/dev/shm/" + name, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        return cls(mm, size, spin)

    def close_mapping(self):
        """Releases the views and unmaps (the handle is unusable after)."""
        self._u32.release()
        del self._anchor
        self._mm.close()

    # --- words ---------------------------------------------------------------------------------------------

    def _addr(self, word):
        return self._base + 4 * word

    def _load(self, word):
        return _load(self._addr(word), _SEQ_CST)

    def _store(self, word, value):
        _store(self._addr(word), value & U32, _SEQ_CST)

    def _add(self, word, delta):
        _fetch_add(self._addr(word), delta & U32, _SEQ_CST)

    def _cas(self, word, expected, desired):
        e = ctypes.c_uint32(expected & U32)
        return _cas(self._addr(word), ctypes.byref(e), desired & U32, False, _SEQ_CST, _SEQ_CST)

    def _wait(self, word, expected, seconds):
        ts = struct.pack("qq", int(seconds), int((seconds % 1) * 1e9))
        t = ctypes.create_string_buffer(ts)
        _libc.syscall(_SYS_FUTEX, ctypes.c_void_p(self._addr(word)), _FUTEX_WAIT, ctypes.c_uint32(expected & U32), t, None, 0)

    def _wake(self, signal, sleepers):
        if self._load(sleepers) != 0:
            self._add(signal, 1)
            _libc.syscall(_SYS_FUTEX, ctypes.c_void_p(self._addr(signal)), _FUTEX_WAKE, 0x7FFFFFFF, None, None, 0)

    def _sleep(self, signal, sleepers, seconds, ready):
        """docs/channel-layout.md §4: raise the count, read the signal, look again, then sleep."""
        self._add(sleepers, 1)
        try:
            v = self._load(signal)
            if not ready():
                self._wait(signal, v, seconds)
        finally:
            self._add(sleepers, -1)

    def _f64_add(self, slot_word, which, n):
        off = slot_word * 4 + which * 8
        struct.pack_into("<d", self._mm, off, struct.unpack_from("<d", self._mm, off)[0] + n)

    # --- geometry ------------------------------------------------------------------------------------------

    def _validate(self):
        w = self._u32
        if self._len < HEADER or self._load(H_MAGIC) != MAGIC or w[H_VERSION] != VERSION:
            raise ChannelCorrupt("no devmap channel (magic, version) at offset 0")
        if self._load(H_READY) != 1:
            raise ChannelCorrupt("the channel is still being created (ready word not set)")
        mode, overflow, ring, mx = w[H_MODE], w[H_OVERFLOW], w[H_RING], w[H_MAX]
        writers, readers = w[H_WRITERS], w[H_READERS]
        if mode not in MODES or overflow not in OVERFLOWS:
            raise ChannelCorrupt("mode %d, overflow %d" % (mode, overflow))
        if ring < 4096 or ring > 1 << 30 or ring & (ring - 1):
            raise ChannelCorrupt("ring size %d" % ring)
        if mx < 1 or _span_of(mx) > ring:
            raise ChannelCorrupt("largest message %d" % mx)
        if not 1 <= writers <= 64 or (mode == 1 and writers != 1):
            raise ChannelCorrupt("%d writer slots" % writers)
        if not 1 <= readers <= 64 or (mode <= 2 and readers != 1):
            raise ChannelCorrupt("%d reader slots" % readers)
        data = (HEADER + SLOT * (writers + readers) + 63) & ~63
        total = data + ring + _span_of(mx)
        if w[H_DATA] != data or w[H_TOTAL] != total or total > self._len:
            raise ChannelCorrupt("data offset / total size do not match the geometry")
        self.mode, self.overflow, self.ring, self.max_message = MODES[mode], OVERFLOWS[overflow], ring, mx
        self._writers, self._readers, self._data = writers, readers, data
        self._mask, self._record_max = ring - 1, _span_of(mx)

    def _slot(self, i):
        return HEADER // 4 + i * (SLOT // 4)

    def _rec(self, pos):
        return (self._data + (pos & self._mask)) // 4

    # --- slots ---------------------------------------------------------------------------------------------

    def _owner_alive(self, s):
        pid = self._load(s + S_PID)
        if pid == U32:
            return True
        start = self._u32[s + S_START_LO] | (self._u32[s + S_START_HI] << 32)
        return _alive(pid if pid < 0x80000000 else 0, start)

    def _tag_dead(self, s, tag):
        if (self._load(s + S_GEN) & GEN_MASK) != tag >> 8:
            return True
        if self._load(s + S_PID) == U32:
            return False
        return not self._owner_alive(s)

    def _claim(self, first, count):
        st = _stat(os.getpid())
        start = st[1] if st else 0
        for pass_ in (0, 1):
            for i in range(count):
                s = self._slot(first + i)
                pid = self._load(s + S_PID)
                if pid != 0 and (pass_ == 0 or pid == U32 or self._owner_alive(s)):
                    continue
                if not self._cas(s + S_PID, pid, U32):
                    continue
                self._store(s + S_GEN, (self._load(s + S_GEN) + 1) & GEN_MASK)
                self._u32[s + S_START_LO] = start & U32
                self._u32[s + S_START_HI] = start >> 32
                return i
        raise ChannelBusy("every slot is held by a live process")

    def detach(self):
        """Gives this process's slots back."""
        me = os.getpid()
        if self.writer_slot >= 0:
            self._cas(self._slot(self.writer_slot) + S_PID, me, 0)
        if self.reader_slot >= 0:
            self._cas(self._slot(self._writers + self.reader_slot) + S_PID, me, 0)
        self.writer_slot = self.reader_slot = -1

    @property
    def closed(self):
        return self._load(H_CLOSED) == 1

    def close(self):
        """Ends the stream: no more sends; readers drain, then receive returns None."""
        self._store(H_CLOSED, 1)
        for signal in (WRITE_SIGNAL, READ_SIGNAL):
            self._add(signal, 1)
            _libc.syscall(_SYS_FUTEX, ctypes.c_void_p(self._addr(signal)), _FUTEX_WAKE, 0x7FFFFFFF, None, None, 0)

    # --- writing -------------------------------------------------------------------------------------------

    def _writer(self):
        if self.writer_slot >= 0:
            return
        i = self._claim(0, self._writers)
        s = self._slot(i)
        self._tag = i | ((self._u32[s + S_GEN] & GEN_MASK) << 8)
        self._store(s + S_PID, os.getpid())
        self.writer_slot = i

    def _limit(self, tail):
        if self.mode in ("spsc", "mpsc", "mpmc"):
            low = self._load(HEAD if self.mode != "mpmc" else RELEASE)
            if (tail - low) & U32 > self.ring:
                raise ChannelCorrupt("read cursor %d bytes behind the tail" % ((tail - low) & U32))
            return low
        low, low_d = tail, 0
        for i in range(self._readers):
            s = self._slot(self._writers + i)
            pid = self._load(s + S_PID)
            if pid == 0 or pid == U32:
                continue
            c = self._load(s + S_CURSOR)
            d = (tail - c) & U32
            if d > self.ring:
                raise ChannelCorrupt("broadcast reader %d is %d bytes behind the tail" % (i, d))
            if d > low_d:
                low, low_d = c, d
        return low

    def _lock(self):
        me = self._tag + 1
        checked = time.monotonic()
        while True:
            owner = self._load(RESERVE_LOCK)
            if owner == 0:
                if self._cas(RESERVE_LOCK, 0, me):
                    return
                continue
            now = time.monotonic()
            if now - checked >= LIVENESS:
                checked = now
                slot = (owner - 1) & 0xFF
                if slot >= self._writers:
                    raise ChannelCorrupt("the reserve lock names writer slot %d" % slot)
                if self._tag_dead(self._slot(slot), owner - 1) and self._cas(RESERVE_LOCK, owner, me):
                    return
            self._sleep(RESERVE_LOCK, LOCK_SLEEPERS, 0.001, lambda: self._load(RESERVE_LOCK) != owner)

    def _unlock(self):
        self._store(RESERVE_LOCK, 0)
        if self._load(LOCK_SLEEPERS) != 0:
            _libc.syscall(_SYS_FUTEX, ctypes.c_void_p(self._addr(RESERVE_LOCK)), _FUTEX_WAKE, 1, None, None, 0)

    def _try_reserve(self, length):
        if self._load(H_CLOSED) == 1:
            raise ChannelClosed("the channel is closed")
        span = _span_of(length)
        multi = self.mode != "spsc"
        if multi:
            self._lock()
        try:
            tail = self._load(TAIL)
            if (tail + span - self._limit(tail)) & U32 > self.ring:
                return None
            r = self._rec(tail)
            self._u32[r + 1] = span
            self._u32[r + 2] = length
            self._u32[r + 3] = self._tag
            self._store(r, RESERVED)
            self._store(TAIL, tail + span)
            return tail
        finally:
            if multi:
                self._unlock()

    def _has_room(self, length):
        if self._load(H_CLOSED) == 1:
            return True
        tail = self._load(TAIL)
        return (tail + _span_of(length) - self._limit(tail)) & U32 <= self.ring

    def _reap_readers(self):
        if self.mode != "broadcast":
            return
        for i in range(self._readers):
            s = self._slot(self._writers + i)
            pid = self._load(s + S_PID)
            if pid not in (0, U32) and not self._owner_alive(s):
                self._cas(s + S_PID, pid, 0)

    def send(self, data, timeout=None):
        """Sends bytes (or a str, as UTF-8). Waits for room under 'block'; False on timeout or full under 'fail'."""
        if isinstance(data, str):
            data = data.encode()
        data = bytes(data)
        if len(data) > self.max_message:
            raise ValueError("a message of at most %d bytes, not %d" % (self.max_message, len(data)))
        if self.overflow == "overwrite":
            raise NotImplementedError("overflow 'overwrite' writers are the Node side's")
        self._writer()
        deadline = None if timeout is None else time.monotonic() + timeout
        spins = self._spin
        while True:
            pos = self._try_reserve(len(data))
            if pos is not None:
                break
            if self.overflow == "fail":
                self._f64_add(self._slot(self.writer_slot), C_AUX2, 1)
                return False
            if spins > 0:
                spins -= 1
                continue
            left = LIVENESS if deadline is None else min(LIVENESS, deadline - time.monotonic())
            if left <= 0:
                self._f64_add(self._slot(self.writer_slot), C_AUX2, 1)
                return False
            self._reap_readers()
            self._sleep(READ_SIGNAL, WRITER_SLEEPERS, left, lambda: self._has_room(len(data)))
        r = self._rec(pos)
        off = r * 4 + 16
        self._mm[off:off + len(data)] = data
        self._store(r, COMMITTED)
        s = self._slot(self.writer_slot)
        self._f64_add(s, C_COUNT, 1)
        self._f64_add(s, C_BYTES, len(data))
        self._wake(WRITE_SIGNAL, READER_SLEEPERS)
        return True

    # --- reading -------------------------------------------------------------------------------------------

    def _reader(self):
        if self.reader_slot >= 0:
            return
        if self.mode == "mpmc":
            raise NotImplementedError("mpmc readers are the Node side's")
        i = self._claim(self._writers, self._readers)
        s = self._slot(self._writers + i)
        if self.mode == "broadcast":
            self._cursor = s + S_CURSOR
            self._store(s + S_FLAGS, 1)
            self._store(self._cursor, self._load(TAIL))
            self._store(s + S_PID, os.getpid())
            self._store(self._cursor, self._load(TAIL))
        else:
            self._cursor = HEAD
            self._store(s + S_PID, os.getpid())
        self.reader_slot = i

    def _ready(self):
        pos = self._load(self._cursor)
        if pos == self._load(TAIL):
            return self._load(H_CLOSED) == 1
        return self._load(self._rec(pos)) != RESERVED

    def _next(self):
        """(pos, length, span) of the next committed record, 'empty', or 'drained'."""
        while True:
            pos = self._load(self._cursor)
            tail = self._load(TAIL)
            if pos == tail:
                # Closed, and still nothing after it: TAIL is read again after CLOSED, since a writer may have
                # sent more between our read of TAIL and its close.
                return "drained" if self._load(H_CLOSED) == 1 and self._load(TAIL) == pos else "empty"
            if (tail - pos) & U32 > self.ring:
                raise ChannelCorrupt("read cursor %d bytes behind the tail" % ((tail - pos) & U32))
            r = self._rec(pos)
            state = self._load(r)
            span = self._u32[r + 1]
            if span < 16 or span > self._record_max or span & 7 or span > (tail - pos) & U32:
                raise ChannelCorrupt("record at position %d has span %d" % (pos, span))
            if state == COMMITTED:
                length = self._u32[r + 2]
                if length > span - 16:
                    raise ChannelCorrupt("record at position %d has length %d" % (pos, length))
                return pos, length, span
            if state == ABORTED:
                self._store(self._cursor, pos + span)
                self._wake(READ_SIGNAL, WRITER_SLEEPERS)
                continue
            if state != RESERVED:
                raise ChannelCorrupt("record state %d at position %d" % (state, pos))
            now = time.monotonic()
            if self._pending[0] != pos:
                self._pending = (pos, now)
                return "empty"
            if now - self._pending[1] < LIVENESS:
                return "empty"
            self._pending = (pos, now)
            tag = self._u32[r + 3]
            if tag & 0xFF >= self._writers:
                raise ChannelCorrupt("record at position %d names writer slot %d" % (pos, tag & 0xFF))
            if not self._tag_dead(self._slot(tag & 0xFF), tag):
                return "empty"
            if self._cas(r, RESERVED, ABORTED):
                self._f64_add(self._slot(self._writers + self.reader_slot), C_AUX1, 1)

    def receive(self, timeout=None):
        """The next message (bytes), waiting for it; None on timeout, or when closed and drained."""
        self._reader()
        deadline = None if timeout is None else time.monotonic() + timeout
        spins = self._spin
        while True:
            got = self._next()
            if got == "drained":
                return None
            if got != "empty":
                pos, length, span = got
                off = self._rec(pos) * 4 + 16
                data = bytes(self._mm[off:off + length])
                if self.overflow == "overwrite":
                    if not self._cas(self._cursor, pos, pos + span):
                        continue
                else:
                    self._store(self._cursor, pos + span)
                s = self._slot(self._writers + self.reader_slot)
                self._f64_add(s, C_COUNT, 1)
                self._f64_add(s, C_BYTES, length)
                self._wake(READ_SIGNAL, WRITER_SLEEPERS)
                return data
            if spins > 0:
                spins -= 1
                continue
            left = LIVENESS if deadline is None else min(LIVENESS, deadline - time.monotonic())
            if left <= 0:
                return None
            self._sleep(WRITE_SIGNAL, READER_SLEEPERS, left, self._ready)

    def __iter__(self):
        while True:
            m = self.receive()
            if m is None:
                return
            yield m
