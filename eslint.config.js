// Lint for edgetwin: typescript-eslint's recommended rules, plus the architecture's boundaries.
// Deployables (agent, collector, cloud) never import each other; common/ imports none of them;
// import cycles are refused. `npm run lint` runs it; `npm test` runs it before the suite.
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

const DEPLOYABLES = ['agent', 'collector', 'cloud'];
/** Each deployable may import common/ and itself only. */
const deployableZones = DEPLOYABLES.flatMap((target) =>
  ['agent', 'collector', 'cloud', 'cli', 'bench', 'models', 'test']
    .filter((from) => from !== target)
    .map((from) => ({
      target: `./${target}`,
      from: `./${from}`,
      message: `${target}/ is a deployable of its own: share through common/ instead`,
    })),
);
/** common/ is shared by all of them, so it imports none of them. */
const commonZones = ['agent', 'collector', 'cloud', 'cli', 'bench', 'models', 'test'].map((from) => ({
  target: './common',
  from: `./${from}`,
  message: 'common/ is shared by every deployable and imports none of them',
}));

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'var/**',
      'coverage/**',
      '.tap/**',
      'test-artifacts/**',
      '.tmp*/**',
      'cloud/dashboard/vendor/**',
    ],
  },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
    },
    rules: {
      'import-x/no-restricted-paths': ['error', { zones: [...deployableZones, ...commonZones] }],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // tsc's noUnusedLocals/noUnusedParameters already refuse these (with `_` for intended ones).
      '@typescript-eslint/no-unused-vars': 'off',
      // `const self = this` is how a closure or generator keeps its owner; any other alias is a mistake.
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['self'] }],
    },
  },
  {
    // Browser code of the dashboard: plain ES modules served as they are.
    files: ['cloud/dashboard/**/*.js'],
    languageOptions: {
      globals: {
        window: 'readonly',
        document: 'readonly',
        fetch: 'readonly',
        EventSource: 'readonly',
        localStorage: 'readonly',
        location: 'readonly',
        history: 'readonly',
        console: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        URL: 'readonly',
        URLSearchParams: 'readonly',
        uPlot: 'readonly',
        sessionStorage: 'readonly',
        requestAnimationFrame: 'readonly',
        ResizeObserver: 'readonly',
        Intl: 'readonly',
        navigator: 'readonly',
        HTMLElement: 'readonly',
        Event: 'readonly',
        CustomEvent: 'readonly',
        AbortController: 'readonly',
      },
    },
  },
);
