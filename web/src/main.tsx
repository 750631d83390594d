import { render } from 'preact';
import { takeTokenFromFragment } from './auth.ts';
import { App } from './app.tsx';
import './styles.css';

// Before anything else: a token in the fragment leaves the address bar at once.
takeTokenFromFragment();
render(<App />, document.getElementById('app') as HTMLElement);
