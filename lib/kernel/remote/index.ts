export { KernelHost, type ListenOptions, type ClientInfo, type ExitReason } from './host';
export { connectKernel, RemoteProcess } from './client';
