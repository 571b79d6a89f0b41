import type { Command } from 'commander';
import type { UserService } from '../server/user/user.service.js';
import { action, printResult, readSecret } from './io.js';
import { configFromFlags, serverDataOptions } from './server.command.js';

async function withUsers<T>(options: { data?: string; config?: string }, work: (users: UserService) => Promise<T>): Promise<T> {
  const { openUserAdministration } = await import('../server/context.js');
  const admin = await openUserAdministration(await configFromFlags(options));
  try {
    return await work(admin.users);
  } finally {
    await admin.close();
  }
}

export function registerUserCommands(program: Command): void {
  const user = program.command('user').description("manage the server's users (works on the data dir, also while the server runs)");

  serverDataOptions(user.command('add <name>').description('create a user'))
    .option('--admin', 'make the user an administrator')
    .option('--password-stdin', 'read the password from standard input')
    .option('--json', 'print the result as JSON')
    .action(
      action(
        async (name: string, options: { data?: string; config?: string; admin?: boolean; passwordStdin?: boolean; json?: boolean }) => {
          const password = await readSecret(options.passwordStdin, `Password for ${name}: `);
          const created = await withUsers(options, (users) => users.addUser(name, password, { admin: options.admin }));
          printResult(options.json, created, () => `created user ${created.name}${created.isAdmin ? ' (admin)' : ''}`);
        },
      ),
    );

  serverDataOptions(user.command('list').description('list users'))
    .option('--json', 'print the result as JSON')
    .action(
      action(async (options: { data?: string; config?: string; json?: boolean }) => {
        const users = await withUsers(options, (service) => service.listUsers());
        printResult(options.json, users, () => users.map((u) => `${u.name}${u.isAdmin ? '\tadmin' : ''}`).join('\n') || '(no users)');
      }),
    );

  serverDataOptions(user.command('passwd <name>').description("set a user's password"))
    .option('--password-stdin', 'read the password from standard input')
    .action(
      action(async (name: string, options: { data?: string; config?: string; passwordStdin?: boolean }) => {
        const password = await readSecret(options.passwordStdin, `New password for ${name}: `);
        await withUsers(options, (users) => users.setPassword(name, password));
        process.stdout.write(`password of ${name} changed\n`);
      }),
    );
}
