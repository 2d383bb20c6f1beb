import { packageVersion } from '../version.js'

export interface CliIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
}

const USAGE = `usage: meshd <command> [options]

commands:
  version        print the meshd version
  help           print this help

Run "meshd <command> --help" for a command's options and an example.
`

/** Parses argv and runs one command. Returns the process exit code; never calls process.exit. */
export function main(argv: readonly string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  return Promise.resolve(runCommand(argv, io))
}

function runCommand(argv: readonly string[], io: CliIo): number {
  const [command, ...rest] = argv
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout.write(USAGE)
      return command === undefined ? 2 : 0
    case 'version':
    case '--version':
      if (rest.includes('--help')) {
        io.stdout.write('usage: meshd version\n\nPrints the meshd version and the Node.js it runs on.\n\nexample:\n  meshd version\n')
        return 0
      }
      io.stdout.write(`meshd ${packageVersion()} (node ${process.version})\n`)
      return 0
    default:
      io.stderr.write(`meshd: unknown command "${command}"; run "meshd help"\n`)
      return 2
  }
}
