/**
 * The WHERE clause of a filtered query: each condition is added together with the values of its
 * `?` placeholders, so the SQL and its parameter list cannot drift apart; a filter that was not
 * given adds nothing.
 */
import type { SqlValue } from './store.js';

export class Where {
  private readonly conditions: string[] = [];
  readonly params: SqlValue[] = [];

  /** Optionally the first condition (one every row must meet) and the values of its `?`s. */
  constructor(condition?: string, ...params: SqlValue[]) {
    if (condition !== undefined) this.add(condition, ...params);
  }

  /** Adds a condition and the values of its `?`s, in order. */
  add(condition: string, ...params: SqlValue[]): this {
    this.conditions.push(condition);
    this.params.push(...params);
    return this;
  }

  /** Adds `condition` (with one `?`) when the filter `value` was given, i.e. is not undefined. */
  given(condition: string, value: SqlValue | undefined): this {
    return value === undefined ? this : this.add(condition, value);
  }

  /** The conditions joined with AND (at least one was added). */
  get sql(): string {
    return this.conditions.join(' AND ');
  }

  /** `WHERE <conditions>`, or '' when there are none. */
  get clause(): string {
    return this.conditions.length > 0 ? `WHERE ${this.sql}` : '';
  }
}
