/**
 * Running ffmpeg and ffprobe through fluent-ffmpeg: one promise per process that settles only
 * once the process has exited, a SIGKILL on abort, and failures sorted into a file no retry will
 * fix (UnprocessableMediaError), a missing tool (PV_MEDIA_DECODER_MISSING) and the rest (plain
 * errors: the job may be retried).
 */
import { resolve } from 'node:path';
import ffmpeg, { type FfmpegCommand, type FfprobeData } from 'fluent-ffmpeg';
import { PvError } from '../../core/errors.js';
import { UnprocessableMediaError } from '../unprocessable-media.error.js';

/** The error for a machine without ffmpeg (Debian ships ffprobe in the same package). */
export function decoderMissingError(): PvError {
  return new PvError('PV_MEDIA_DECODER_MISSING', 'ffmpeg is not installed', {
    fix: 'install the Debian package ffmpeg (scripts/setup.sh does)',
  });
}

/**
 * The argument that names a local file to ffmpeg: absolute, and with the file: protocol so that a
 * name such as "concat:a|b" or "pipe:1" is never read as another protocol.
 */
export function ffmpegSource(path: string): string {
  return `file:${resolve(path)}`;
}

/**
 * Failures of the machine rather than of the file (ffmpeg prints strerror()): these may go away,
 * so they must not mark the file unprocessable.
 */
const ENVIRONMENT_FAILURE =
  /No such file or directory|No space left on device|Cannot allocate memory|Permission denied|Too many open files|Read-only file system|Input\/output error|Disk quota exceeded/i;

/** fluent-ffmpeg's words when it cannot find the binary, and spawn()'s when the binary vanished. */
function isToolMissing(error: unknown): boolean {
  const { message, code } = error as { message?: string; code?: string };
  return code === 'ENOENT' || /^Cannot find ff(mpeg|probe)/.test(message ?? '');
}

/**
 * What ffmpeg said went wrong, for people: its last few distinct error lines, without the
 * "[demuxer @ 0x55d0...]" prefixes and with the input's path replaced by "input" (paths are
 * content hashes in the blob store, meaningless to a reader).
 */
export function ffmpegReason(stderr: string, source: string): string {
  const lines = stderr
    .split(/\r?\n/)
    .map((line) => line.replace(/^\[[^\]]* @ 0x[0-9a-f]+\]\s*/, '').trim())
    .filter((line) => line !== '' && line !== 'Conversion failed!' && !line.startsWith('Exiting normally'))
    .map((line) => line.replaceAll(source, 'input').replaceAll(source.replace(/^file:/, ''), 'input'));
  const distinct = [...new Set(lines)];
  return distinct.slice(-3).join('; ') || 'ffmpeg failed without saying why';
}

/** Sorts a failed run of ffmpeg or ffprobe (exit code, signal or spawn error) into the three kinds. */
function classify(error: Error, stderr: string, source: string, tool: string): Error {
  if (isToolMissing(error)) return decoderMissingError();
  // Killed by someone else (the OOM killer, a shutdown): nothing says the file is at fault.
  if (/killed with signal/.test(error.message)) return new Error(`${tool}: ${error.message}`, { cause: error });
  const reason = ffmpegReason(stderr, source);
  if (ENVIRONMENT_FAILURE.test(stderr)) return new Error(`${tool}: ${reason}`, { cause: error });
  if (/exited with code/.test(error.message)) return new UnprocessableMediaError(reason, { tool });
  return error;
}

/**
 * Runs a prepared command to its end. Resolves with ffmpeg's stderr once the process has exited
 * successfully; rejects after it has exited otherwise, so a caller that then removes the output
 * never races a still-writing ffmpeg. On abort the process gets SIGKILL (also when the abort
 * comes before fluent-ffmpeg has spawned it) and the promise rejects with the signal's reason.
 */
export function runFfmpeg(command: FfmpegCommand, source: string, signal?: AbortSignal): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    let started = false;
    const onAbort = () => {
      if (started) command.kill('SIGKILL');
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const settle = () => signal?.removeEventListener('abort', onAbort);
    command
      .on('start', () => {
        started = true;
        if (signal?.aborted) command.kill('SIGKILL');
      })
      .on('end', (_stdout: string | null, stderr: string | null) => {
        settle();
        if (signal?.aborted) reject(signal.reason);
        else resolvePromise(stderr ?? '');
      })
      .on('error', (error: Error, _stdout: string | null, stderr: string | null) => {
        settle();
        if (signal?.aborted) reject(signal.reason);
        else reject(classify(error, stderr ?? '', source, 'ffmpeg'));
      })
      .run();
  });
}

/** A new fluent-ffmpeg command reading one local file, quiet but for errors. */
export function ffmpegCommand(input: string, options: { cwd?: string } = {}): { command: FfmpegCommand; source: string } {
  const source = ffmpegSource(input);
  // The ring of stderr lines fluent-ffmpeg keeps: errors only, so 100 lines is plenty.
  const command = ffmpeg({ ...options, stdoutLines: 100 })
    .input(source)
    .inputOptions('-nostdin', '-hide_banner', '-loglevel', 'error');
  return { command, source };
}

/** ffprobe -show_streams -show_format of a local file, failures sorted like runFfmpeg's. */
export function ffprobe(input: string): Promise<FfprobeData> {
  const source = ffmpegSource(input);
  return new Promise((resolvePromise, reject) => {
    ffmpeg.ffprobe(source, ['-hide_banner', '-loglevel', 'error'], (error: unknown, data: FfprobeData) => {
      if (!error) return resolvePromise(data);
      if (isToolMissing(error)) return reject(decoderMissingError());
      if (!(error instanceof Error)) return reject(new Error(`ffprobe: ${String(error)}`));
      // fluent-ffmpeg appends ffprobe's stderr to the message, after the first line.
      const [first = '', ...rest] = error.message.split('\n');
      reject(classify(new Error(first, { cause: error }), rest.join('\n'), source, 'ffprobe'));
    });
  });
}
