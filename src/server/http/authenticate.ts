import type { FastifyRequest } from 'fastify';
import { PvError } from '../../core/errors.js';
import type { Principal, UserService } from '../user/user.service.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** onRequest hook for protected routes: resolves `Authorization: Bearer <token>` to request.principal. */
export function bearerAuth(users: UserService) {
  return async (request: FastifyRequest) => {
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : '';
    if (!token) {
      throw new PvError('PV_AUTH_REQUIRED', 'This request needs an access token.', {
        fix: 'Send "Authorization: Bearer <token>"; `photovault login` gets one.',
      });
    }
    request.principal = await users.authenticate(token);
  };
}

/** The principal of an authenticated request. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new PvError('PV_AUTH_REQUIRED', 'This request needs an access token.');
  return request.principal;
}
