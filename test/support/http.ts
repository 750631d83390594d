import { eventually } from './child.ts';

/** One GET of `url`: its status and its JSON body. */
export async function status(url: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}

/** Polls `url` (every `intervalMs`) until it answers `wanted`, within `deadlineMs`; returns the body of that answer. */
export function untilStatus(url: string, wanted: number, deadlineMs = 60_000, intervalMs = 100): Promise<unknown> {
  return eventually(`${url} to answer ${wanted}`, async () => {
    const answer = await status(url);
    return answer.status === wanted ? answer.body : undefined;
  }, deadlineMs, intervalMs);
}
