import { Command, CommanderError } from 'commander';
import { registerAdminCommands } from './admin.command.js';
import { registerDeviceCommands } from './devices.command.js';
import { EXIT } from './exit-codes.js';
import { registerFilesCommands } from './files.command.js';
import { registerLoginCommands } from './login.command.js';
import { registerMediaCommands } from './media.command.js';
import { registerServerCommands } from './server.command.js';
import { registerStatusCommand } from './status.command.js';
import { registerSyncCommands } from './sync.command.js';
import { registerUploadCommand } from './upload.command.js';
import { registerUserCommands } from './user.command.js';
import { registerWorkerCommands } from './worker.command.js';

const program = new Command('photovault')
  .description('self-hosted photo and file vault')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

registerServerCommands(program);
registerWorkerCommands(program);
registerUserCommands(program);
registerAdminCommands(program);
registerLoginCommands(program);
registerUploadCommand(program);
registerFilesCommands(program);
registerMediaCommands(program);
registerSyncCommands(program);
registerStatusCommand(program);
registerDeviceCommands(program);

try {
  await program.parseAsync();
} catch (error) {
  if (!(error instanceof CommanderError)) throw error;
  // Help and version exit 0; every other commander error is a usage error.
  process.exitCode = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
}
