import { afterAll, beforeAll, expect, it } from 'vitest';
import { sha256Hex } from '../../src/core/hash.js';
import { UserRepository } from '../../src/server/user/user.repository.js';
import { UserService } from '../../src/server/user/user.service.js';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, TEST_PASSWORD, type TestServer } from '../support/server.js';

describeEachDatabase('authentication', (kind) => {
  let server: TestServer;

  beforeAll(async () => {
    server = await createTestServer(kind, { auth: { loginAttempts: 3, loginWindowSeconds: 60, sessionDays: 30 } });
    await server.context.users.addUser('carol', TEST_PASSWORD);
  });
  afterAll(async () => {
    await server.close();
  });

  const login = (user: string, password: string, extra: Record<string, string> = {}) =>
    server.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { user, password, deviceName: 'test box', ...extra },
      remoteAddress: extra.ip ?? '10.0.0.1',
    });

  it('logs in with the right password, registering the device, and the token works', async () => {
    const answer = await login('carol', TEST_PASSWORD);
    expect(answer.statusCode).toBe(200);
    const { token, device } = answer.json();
    expect(token).toMatch(/^pvs_[A-Za-z0-9_-]{43}$/);
    const me = await server.app.inject({ url: '/api/v1/auth/me', headers: { authorization: `Bearer ${token}` } });
    expect(me.json()).toMatchObject({ name: 'carol', deviceId: device.id });
    const devices = await server.app.inject({ url: '/api/v1/devices', headers: { authorization: `Bearer ${token}` } });
    expect(devices.json()).toContainEqual(expect.objectContaining({ id: device.id, name: 'test box', current: true }));
  });

  it('stores tokens and passwords only as hashes', async () => {
    const { token } = (await login('carol', TEST_PASSWORD)).json();
    const rows = await server.context.db.selectFrom('tokens').selectAll().execute();
    expect(rows.some((row) => row.hash === sha256Hex(token))).toBe(true);
    expect(JSON.stringify(rows)).not.toContain(token);
    const user = await server.context.db.selectFrom('users').select('password_hash').where('name', '=', 'carol').executeTakeFirstOrThrow();
    expect(user.password_hash).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(user.password_hash).not.toContain(TEST_PASSWORD);
  });

  it('answers a wrong password and an unknown user alike', async () => {
    const wrong = await login('carol', 'not the password', { ip: '10.0.0.2' });
    const unknown = await login('nobody', 'not the password', { ip: '10.0.0.2' });
    expect(wrong.statusCode).toBe(401);
    expect(unknown.statusCode).toBe(401);
    expect(wrong.json()).toEqual(unknown.json());
    expect(wrong.json().code).toBe('PV_AUTH_INVALID_CREDENTIALS');
  });

  it('limits failed logins per user and address, even for the right password', async () => {
    for (let i = 0; i < 3; i++) expect((await login('carol', 'guess', { ip: '10.0.0.3' })).statusCode).toBe(401);
    const limited = await login('carol', TEST_PASSWORD, { ip: '10.0.0.3' });
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('60');
    expect(limited.json().code).toBe('PV_RATE_LIMITED');
    // Another address is not locked out by someone guessing elsewhere.
    expect((await login('carol', TEST_PASSWORD, { ip: '10.0.0.4' })).statusCode).toBe(200);
  });

  it('does not let a client escape the login limit by claiming another address', async () => {
    const spoofed = (i: number) =>
      server.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { user: 'carol', password: 'guess', deviceName: 'x' },
        remoteAddress: '10.0.0.9',
        headers: { 'x-forwarded-for': `203.0.113.${i}` },
      });
    for (let i = 0; i < 3; i++) expect((await spoofed(i)).statusCode).toBe(401);
    expect((await spoofed(99)).statusCode).toBe(429);
  });

  it.each([
    ['no token', undefined, 'PV_AUTH_REQUIRED'],
    ['a forged token', `Bearer pvs_${'A'.repeat(43)}`, 'PV_AUTH_TOKEN_INVALID'],
    ['garbage', 'Bearer not-a-token', 'PV_AUTH_TOKEN_INVALID'],
    ['another scheme', 'Basic Y2Fyb2w6cGFzcw==', 'PV_AUTH_REQUIRED'],
  ])('refuses a request with %s', async (_name, authorization, code) => {
    const answer = await server.app.inject({ url: '/api/v1/files', headers: authorization ? { authorization } : {} });
    expect(answer.statusCode).toBe(401);
    expect(answer.json().code).toBe(code);
  });

  it('refuses an expired session token', async () => {
    const { token } = (await login('carol', TEST_PASSWORD, { ip: '10.0.0.5' })).json();
    const headers = { authorization: `Bearer ${token}` };
    expect((await server.app.inject({ url: '/api/v1/files', headers })).statusCode).toBe(200);
    server.clock.advance(31 * 86_400_000);
    const answer = await server.app.inject({ url: '/api/v1/files', headers });
    expect(answer.statusCode).toBe(401);
    expect(answer.json().code).toBe('PV_AUTH_TOKEN_EXPIRED');
  });

  it('ends a session on logout and on device revocation', async () => {
    const first = (await login('carol', TEST_PASSWORD, { ip: '10.0.0.6' })).json();
    const second = (await login('carol', TEST_PASSWORD, { ip: '10.0.0.6' })).json();
    await server.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${first.token}` } });
    expect((await server.app.inject({ url: '/api/v1/files', headers: { authorization: `Bearer ${first.token}` } })).statusCode).toBe(401);

    const other = (await login('carol', TEST_PASSWORD, { ip: '10.0.0.6' })).json();
    const revoke = await server.app.inject({
      method: 'DELETE',
      url: `/api/v1/devices/${second.device.id}`,
      headers: { authorization: `Bearer ${other.token}` },
    });
    expect(revoke.statusCode).toBe(204);
    expect((await server.app.inject({ url: '/api/v1/files', headers: { authorization: `Bearer ${second.token}` } })).statusCode).toBe(401);
  });

  it('ends a revoked session at once in every server process sharing the store', async () => {
    // Another server process: its own service and database connections' view, the same database and KV store.
    const elsewhere = new UserService(new UserRepository(server.context.db), server.context.kv, server.config.auth);
    const laptop = (await login('carol', TEST_PASSWORD, { ip: '10.0.0.7' })).json();
    const phone = (await login('carol', TEST_PASSWORD, { ip: '10.0.0.7', deviceName: 'phone' })).json();
    const apiKey = (
      await server.app.inject({ method: 'POST', url: '/api/v1/api-keys', headers: { authorization: `Bearer ${phone.token}` }, payload: {} })
    ).json();
    for (const token of [laptop.token, phone.token, apiKey.token]) await elsewhere.authenticate(token);

    const revoke = (url: string) => server.app.inject({ method: 'DELETE', url, headers: { authorization: `Bearer ${phone.token}` } });
    expect((await revoke(`/api/v1/devices/${laptop.device.id}`)).statusCode).toBe(204);
    expect((await revoke(`/api/v1/api-keys/${apiKey.apiKey.id}`)).statusCode).toBe(204);
    await expect(elsewhere.authenticate(laptop.token)).rejects.toMatchObject({ code: 'PV_AUTH_TOKEN_INVALID' });
    await expect(elsewhere.authenticate(apiKey.token)).rejects.toMatchObject({ code: 'PV_AUTH_TOKEN_INVALID' });
    expect((await elsewhere.authenticate(phone.token)).deviceName).toBe('phone');
    await elsewhere.logout(await elsewhere.authenticate(phone.token));
    expect((await server.app.inject({ url: '/api/v1/files', headers: { authorization: `Bearer ${phone.token}` } })).statusCode).toBe(401);
  });

  it('keeps the device identity when a known device logs in again', async () => {
    const first = (await login('carol', TEST_PASSWORD, { ip: '10.0.0.7' })).json();
    const again = (await login('carol', TEST_PASSWORD, { ip: '10.0.0.7', deviceId: first.device.id })).json();
    expect(again.device.id).toBe(first.device.id);
  });

  it('issues API keys that work until revoked', async () => {
    const { token } = (await login('carol', TEST_PASSWORD, { ip: '10.0.0.8' })).json();
    const created = await server.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: { authorization: `Bearer ${token}` },
      payload: { label: 'backup script' },
    });
    expect(created.statusCode).toBe(201);
    const { token: key, apiKey } = created.json();
    expect(key).toMatch(/^pvk_/);
    const keyAuth = { authorization: `Bearer ${key}` };
    expect((await server.app.inject({ url: '/api/v1/files', headers: keyAuth })).statusCode).toBe(200);
    const listed = await server.app.inject({ url: '/api/v1/api-keys', headers: keyAuth });
    expect(listed.json()).toContainEqual(expect.objectContaining({ id: apiKey.id, label: 'backup script' }));
    expect(JSON.stringify(listed.json())).not.toContain(key);
    await server.app.inject({ method: 'DELETE', url: `/api/v1/api-keys/${apiKey.id}`, headers: { authorization: `Bearer ${token}` } });
    expect((await server.app.inject({ url: '/api/v1/files', headers: keyAuth })).statusCode).toBe(401);
  });
});

describeEachDatabase('user administration', (kind) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await createTestServer(kind);
  });
  afterAll(async () => {
    await server.close();
  });

  it('refuses duplicate names, bad names and short passwords', async () => {
    await server.context.users.addUser('dave', TEST_PASSWORD, { admin: true });
    await expect(server.context.users.addUser('dave', TEST_PASSWORD)).rejects.toMatchObject({ code: 'PV_USER_EXISTS' });
    await expect(server.context.users.addUser('../root', TEST_PASSWORD)).rejects.toMatchObject({ code: 'PV_INVALID_INPUT' });
    await expect(server.context.users.addUser('erin', 'short')).rejects.toMatchObject({ code: 'PV_INVALID_INPUT' });
    expect(await server.context.users.listUsers()).toEqual([expect.objectContaining({ name: 'dave', isAdmin: true })]);
  });

  it('changes a password: the old one stops working', async () => {
    await server.context.users.addUser('frank', TEST_PASSWORD);
    await server.context.users.setPassword('frank', 'a brand new password');
    const attempt = (password: string) =>
      server.context.users.login({ name: 'frank', password, deviceName: 'x', clientAddress: '1.1.1.1' });
    await expect(attempt(TEST_PASSWORD)).rejects.toMatchObject({ code: 'PV_AUTH_INVALID_CREDENTIALS' });
    await expect(attempt('a brand new password')).resolves.toMatchObject({ user: { name: 'frank' } });
  });
});
