/**
 * Exact Shapley values of k players from the value of every coalition: `v[S]` is the value when the
 * players whose bits are set in S are present (bit i = player i), so v has 2^k entries. Player i
 * gets the weighted mean of its marginal contributions v(S ∪ {i}) − v(S) over every coalition S
 * without it, with weight |S|! (k − |S| − 1)! / k!. The values sum to v(all) − v(none) (efficiency),
 * a player whose presence never changes v gets 0 (null player), and the cost is k · 2^k additions.
 */
export const MAX_PLAYERS = 8;

export function shapleyValues(v: ArrayLike<number>, k: number): Float64Array {
  if (!Number.isInteger(k) || k < 1 || k > MAX_PLAYERS) throw new RangeError(`shapleyValues: k must be 1..${MAX_PLAYERS}, got ${k}`);
  const n = 1 << k;
  if (v.length !== n) throw new RangeError(`shapleyValues: need 2^${k} = ${n} coalition values, got ${v.length}`);
  const fact = [1];
  for (let i = 1; i <= k; i++) fact.push(fact[i - 1]! * i);
  const weight = Array.from({ length: k }, (_, s) => (fact[s]! * fact[k - s - 1]!) / fact[k]!);
  const phi = new Float64Array(k);
  for (let S = 0; S < n; S++) {
    const w = weight[popcount(S)];
    if (w === undefined) continue; // S is every player: nobody is missing from it
    for (let i = 0; i < k; i++) {
      const bit = 1 << i;
      if ((S & bit) === 0) phi[i]! += w * (v[S | bit]! - v[S]!);
    }
  }
  return phi;
}

function popcount(x: number): number {
  let c = 0;
  for (let y = x; y !== 0; y &= y - 1) c++;
  return c;
}
