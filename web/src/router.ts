import { useEffect, useState } from 'preact/hooks';

/** The page's routes live below /dashboard (Vite's base), moved between with the history API. */
const BASE = import.meta.env.BASE_URL.replace(/\/$/, ''); // "/dashboard"

export type Route =
  | { readonly page: 'jobs' }
  | { readonly page: 'job'; readonly id: string }
  | { readonly page: 'new' }
  | { readonly page: 'missing' };

export function parseRoute(pathname: string): Route {
  const path = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  if (path === '' || path === '/') return { page: 'jobs' };
  if (path === '/new') return { page: 'new' };
  const job = /^\/jobs\/(\d{1,19})$/.exec(path);
  if (job) return { page: 'job', id: job[1] as string };
  return { page: 'missing' };
}

/** The URL of a path inside the dashboard, e.g. href('/jobs/4'). */
export function href(path: string): string {
  return `${BASE}${path}`;
}

const listeners = new Set<() => void>();

export function navigate(path: string): void {
  window.history.pushState(null, '', href(path));
  for (const listener of listeners) listener();
  window.scrollTo(0, 0);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.pathname));
  useEffect(() => {
    const update = (): void => setRoute(parseRoute(window.location.pathname));
    listeners.add(update);
    window.addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      window.removeEventListener('popstate', update);
    };
  }, []);
  return route;
}

/** A click on an in-page link: moved with the history API unless the user asked for a new tab. */
export function onLinkClick(path: string) {
  return (event: MouseEvent): void => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(path);
  };
}
