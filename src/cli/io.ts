import { isPvError } from '../core/errors.js';
import { EXIT, exitCodeFor } from './exit-codes.js';

/** Prints a result as JSON (for scripts) or as the human text. */
export function printResult(json: boolean | undefined, value: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

/**
 * Runs a command's action and turns a thrown error into a message on stderr and an exit code:
 * domain errors show their message and fix; anything else is a bug and shows its stack.
 */
export function action<A extends unknown[]>(run: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      process.exitCode = (await run(...args)) ?? EXIT.ok;
    } catch (error) {
      if (isPvError(error)) {
        process.stderr.write(`photovault: ${error.message}\n${error.fix ? `  fix: ${error.fix}\n` : ''}`);
        process.exitCode = exitCodeFor(error.code);
      } else {
        process.stderr.write(`photovault: unexpected error: ${(error as Error).stack ?? String(error)}\n`);
        process.exitCode = EXIT.failure;
      }
    }
  };
}

/** Reads a secret: all of stdin with --password-stdin, else a prompt on the terminal that does not echo. */
export async function readSecret(fromStdin: boolean | undefined, prompt: string): Promise<string> {
  if (fromStdin || !process.stdin.isTTY) {
    let text = '';
    for await (const piece of process.stdin) text += piece;
    return text.replace(/\r?\n$/, '');
  }
  process.stderr.write(prompt);
  const stdin = process.stdin;
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let secret = '';
    const onData = (key: string) => {
      for (const char of key) {
        if (char === '\r' || char === '\n') {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.off('data', onData);
          process.stderr.write('\n');
          resolve(secret);
          return;
        }
        if (char === '\u0003') {
          stdin.setRawMode(false);
          reject(new Error('cancelled'));
          return;
        }
        secret = char === '\u007f' ? secret.slice(0, -1) : secret + char;
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}

/** Human-readable byte count. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Resolves on the first SIGINT or SIGTERM, for long-running commands that then shut down cleanly. */
export function stopSignal(): Promise<NodeJS.Signals> {
  // Signal listeners do not keep Node running: a worker whose only timers are unref'd would
  // exit at once, so hold the process open until the signal comes.
  const keepAlive = setInterval(() => {}, 2 ** 30);
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      clearInterval(keepAlive);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(signal);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
