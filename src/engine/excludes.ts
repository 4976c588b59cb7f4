import { readFileSync } from 'node:fs';
import picomatch from 'picomatch';
import { UserError } from '../errors.js';

/**
 * Exclude patterns in the style restic users know: a pattern with a slash is
 * matched against the whole absolute path, one without a slash against the base
 * name; `**` crosses directories. A leading `!` re-includes. Matching is done on
 * the path decoded as UTF-8 (invalid bytes become U+FFFD), which is how the
 * patterns themselves arrive.
 */
export class ExcludeMatcher {
  private readonly rules: Array<{ negate: boolean; match: (s: string) => boolean; full: boolean }> = [];

  constructor(readonly patterns: string[]) {
    for (const raw of patterns) {
      const negate = raw.startsWith('!');
      const pattern = negate ? raw.slice(1) : raw;
      if (!pattern) continue;
      const full = pattern.includes('/');
      const match = picomatch(full ? pattern.replace(/\/+$/, '') : pattern, { dot: true });
      this.rules.push({ negate, match, full });
    }
  }

  static fromFile(file: string): string[] {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UserError(`cannot read exclude file ${file}: ${(err as Error).message}`);
    }
    return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  excluded(absPath: string, baseName: string): boolean {
    let out = false;
    for (const r of this.rules) {
      if (r.match(r.full ? absPath : baseName) || (r.full && r.match(absPath + '/'))) out = !r.negate;
    }
    return out;
  }
}
