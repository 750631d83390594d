// `npm install` and `npm ci` run the project's `prepare` script, which builds the dashboard
// (`npm run build:web`). They run it with --omit=dev too, where the build tools (Vite, codegen:
// dev dependencies) are absent: then this says so and leaves the dashboard unbuilt instead of
// failing the install; the server answers /dashboard with how to build it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const tools = ['vite', '@graphql-codegen/cli'];
const missing = tools.filter((name) => !existsSync(new URL(`../node_modules/${name}/package.json`, import.meta.url)));
if (missing.length > 0) {
  console.warn(`hardcron: the dashboard is not built (${missing.join(', ')} not installed: dev dependencies); npm run build:web builds it`);
  process.exit(0);
}
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const build = spawnSync(npm, ['run', 'build:web'], { stdio: 'inherit', shell: process.platform === 'win32' });
process.exit(build.status ?? 1);
