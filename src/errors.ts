/**
 * Errors a user can cause or meet, each with the exit code the CLI reports
 * (README, "Exit codes"). Anything else is a bug and exits 1.
 */
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'UserError';
  }
}

export class RepositoryMissingError extends UserError {
  constructor(location: string, detail = 'repository does not exist') {
    super(`${detail}: ${location} (create one with "aegis init")`, 10);
    this.name = 'RepositoryMissingError';
  }
}

export class LockedError extends UserError {
  constructor(message: string) {
    super(message, 11);
    this.name = 'LockedError';
  }
}

export class InterruptedError extends UserError {
  constructor() {
    super('interrupted', 130);
    this.name = 'InterruptedError';
  }
}

export const EXIT = {
  ok: 0,
  fatal: 1,
  partial: 3,
  noRepository: 10,
  locked: 11,
  wrongPassphrase: 12,
  interrupted: 130,
} as const;
