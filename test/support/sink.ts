import { Writable } from 'node:stream'

/** A writable that keeps what is written to it, for CLI output in tests. */
export function sink(): { stream: Writable; text: () => string } {
  let text = ''
  return {
    stream: new Writable({
      write(chunk: Buffer, _e, done) {
        text += chunk.toString('utf8')
        done()
      },
    }),
    text: () => text,
  }
}
