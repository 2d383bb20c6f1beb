// systeminformation's network module on its own: the package's index loads
// every module it has (cpu, disks, processes, docker, …), about 4 MB of the
// agent's resident memory for one function.
declare module 'systeminformation/lib/network.js' {
  import type { Systeminformation } from 'systeminformation'
  export function networkInterfaces(rescan: boolean): Promise<Systeminformation.NetworkInterfacesData[]>
}
