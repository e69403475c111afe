import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LookupCache } from '../../src/directory/cache.js';

describe('lookup cache', () => {
  it('keeps hits and misses for their own lifetimes', async () => {
    let now = 1000;
    const cache = new LookupCache({ positiveTtlMs: 60_000, negativeTtlMs: 10_000, maxEntries: 100, now: () => now });
    let loads = 0;
    const load = (value: string | null) => async () => {
      loads++;
      return value;
    };
    assert.equal(await cache.get('hit', load('v')), 'v');
    assert.equal(await cache.get('miss', load(null)), null);
    assert.equal(await cache.get('hit', load('other')), 'v');
    assert.equal(await cache.get('miss', load('now-there')), null);
    assert.equal(loads, 2);
    now += 11_000; // the miss expired, the hit did not
    assert.equal(await cache.get('miss', load('now-there')), 'now-there');
    assert.equal(await cache.get('hit', load('other')), 'v');
    now += 60_000;
    assert.equal(await cache.get('hit', load('other')), 'other');
    assert.equal(loads, 4);
  });

  it('runs one lookup for concurrent callers and never caches a failure', async () => {
    const cache = new LookupCache({ positiveTtlMs: 60_000, negativeTtlMs: 10_000, maxEntries: 100 });
    let loads = 0;
    const slow = async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 20));
      return 'v';
    };
    const results = await Promise.all(Array.from({ length: 10 }, () => cache.get('k', slow)));
    assert.deepEqual(new Set(results), new Set(['v']));
    assert.equal(loads, 1);
    await assert.rejects(
      cache.get('bad', async () => Promise.reject(new Error('database down'))),
      /database down/,
    );
    assert.equal(await cache.get('bad', async () => 'back'), 'back');
  });

  it('evicts the least recently used entry beyond max_entries, and clear() drops answers in flight', async () => {
    const cache = new LookupCache({ positiveTtlMs: 60_000, negativeTtlMs: 10_000, maxEntries: 2 });
    await cache.get('a', async () => 1);
    await cache.get('b', async () => 2);
    await cache.get('a', async () => 99); // a is now the most recent
    await cache.get('c', async () => 3); // evicts b
    assert.equal(cache.size, 2);
    assert.equal(await cache.get('a', async () => 99), 1);
    assert.equal(await cache.get('b', async () => 22), 22);

    let release!: () => void;
    const pending = cache.get('late', () => new Promise<number>((r) => (release = () => r(1))));
    cache.clear();
    release();
    assert.equal(await pending, 1);
    assert.equal(await cache.get('late', async () => 2), 2, 'an answer that predates clear() is not kept');
  });
});
