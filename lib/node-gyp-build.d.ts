declare module 'node-gyp-build' {
  function load(dir: string): unknown;
  namespace load {
    /** The file load(dir) would load: build/Release first, then prebuilds/<platform>-<arch>/. */
    function path(dir: string): string;
  }
  export = load;
}
