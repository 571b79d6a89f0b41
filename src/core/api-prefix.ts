/** The versioned root of every API route. Its own module so clients get it without loading the schemas. */
export const API_PREFIX = '/api/v1';
