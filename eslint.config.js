// ESLint 9 flat configuration: faults, not style (prettier keeps the style,
// `npm run lint` runs both).  Type-aware: the rules about promises need the
// types, and tsconfig.json covers src/ and test/.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'var/', 'test/fixtures/', 'test/demo/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // node:test's test() and describe() return promises the runner awaits
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite', 'before', 'after'] }],
        },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/await-thenable': 'error',
      // a getter of an object literal reads the class's state through `self`
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['self'] }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'always'],
      // prettier wraps code at 140 columns but not comments, strings or regular expressions: they are wrapped by hand
      'max-len': ['error', { code: 140, tabWidth: 2 }],
    },
  },
  {
    // tests match output byte for byte: control characters and runs of spaces in their regexes are meant
    files: ['test/**/*.ts'],
    rules: { 'no-control-regex': 'off', 'no-regex-spaces': 'off' },
  },
);
