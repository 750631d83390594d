import { Provider } from '@urql/preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { cleanPastedToken, forgetToken, storedToken, storeToken, tokenClaims } from './auth.ts';
import { checkToken, connect } from './client.ts';
import { Link, useTitle } from './components.tsx';
import { JobPage } from './pages/job.tsx';
import { JobsPage } from './pages/jobs.tsx';
import { NewJobPage } from './pages/new-job.tsx';
import { useRoute } from './router.ts';

export function App() {
  const [token, setToken] = useState<string | null>(() => storedToken());
  const [notice, setNotice] = useState<string | null>(null);
  const signOut = (message: string | null): void => {
    forgetToken();
    setNotice(message);
    setToken(null);
  };
  const connection = useMemo(() => (token ? connect(token, (message) => signOut(`You were signed out: ${message}`)) : null), [token]);
  useEffect(() => () => connection?.dispose(), [connection]);
  // A token that expires while the page is open: signed out then, saying why (the server would
  // refuse the next request, and ends subscriptions at expiry anyway).
  useEffect(() => {
    const exp = token ? tokenClaims(token)?.exp : null;
    if (!exp) return;
    const timer = window.setTimeout(() => signOut('Your token has expired: paste a new one.'), Math.min(2 ** 31 - 1, Math.max(0, exp * 1000 - Date.now())));
    return () => window.clearTimeout(timer);
  }, [token]);

  if (!token || !connection) {
    return (
      <SignIn
        notice={notice}
        onSignIn={(good) => {
          storeToken(good);
          setNotice(null);
          setToken(good);
        }}
      />
    );
  }
  const who = tokenClaims(token)?.role ?? 'unknown user';
  return (
    <Provider value={connection.client}>
      <Shell who={who} onSignOut={() => signOut('You are signed out.')} />
    </Provider>
  );
}

function Shell(props: { who: string; onSignOut: () => void }) {
  const route = useRoute();
  const main = useRef<HTMLElement>(null);
  // After a page change, move focus to the new page's content (as a full page load would).
  useEffect(() => {
    main.current?.focus();
  }, [route]);
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <Link to="/" class="brand">hardcron</Link>
        <nav aria-label="Main">
          <Link to="/">Jobs</Link>
          <Link to="/new">Schedule a job</Link>
        </nav>
        <div class="who">
          <span>
            Signed in as <strong data-testid="signed-in-as">{props.who}</strong>
          </span>
          <button type="button" class="secondary" onClick={props.onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {route.page === 'jobs' ? <JobsPage /> : null}
        {route.page === 'job' ? <JobPage key={route.id} id={route.id} /> : null}
        {route.page === 'new' ? <NewJobPage /> : null}
        {route.page === 'missing' ? (
          <section>
            <h1>Not found</h1>
            <p>
              There is no such page. <Link to="/">See your jobs</Link>.
            </p>
          </section>
        ) : null}
      </main>
    </>
  );
}

function SignIn(props: { notice: string | null; onSignIn: (token: string) => void }) {
  useTitle('Sign in');
  const [text, setText] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event): Promise<void> => {
    event.preventDefault();
    const token = cleanPastedToken(text);
    if (!token) {
      setError('Paste a token first.');
      return;
    }
    setBusy(true);
    const refused = await checkToken(token);
    setBusy(false);
    if (refused) {
      setError(refused);
      return;
    }
    props.onSignIn(token);
  };
  return (
    <main id="main" class="signin">
      <h1>hardcron</h1>
      {props.notice ? (
        <p class="notice" role="status">
          {props.notice}
        </p>
      ) : null}
      <form onSubmit={(e) => void submit(e)}>
        <div class={`field${error ? ' invalid' : ''}`}>
          <label for="token">Token</label>
          <textarea
            id="token"
            name="token"
            rows={4}
            autoComplete="off"
            spellcheck={false}
            value={text}
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? 'token-help token-error' : 'token-help'}
            onInput={(e) => setText(e.currentTarget.value)}
          />
          <div class="help" id="token-help">
            Paste a JWT (<code>npx hardcron token &lt;user&gt;</code> prints one). It is kept in this tab only, until you sign out or close it.
          </div>
          {error ? (
            <div class="field-error" id="token-error" role="alert">
              {error}
            </div>
          ) : null}
        </div>
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
