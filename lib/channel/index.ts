/** Zero-copy channels between processes in a shared segment. See docs/channels.md and docs/channel-layout.md. */
export { Channel, Subscriber } from './channel';
export type { ChannelOptions, HandleOptions, WaitOptions, Loan, Message } from './channel';
export type { ChannelStats, ChannelReaderInfo, ChannelWriterInfo } from './stats';
export type { Mode as ChannelMode, Overflow as ChannelOverflow } from './layout';
