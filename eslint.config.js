import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const nodeGlobals = {
  process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly',
  setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly',
  AbortSignal: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', fetch: 'readonly', WebSocket: 'readonly',
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.vm-cache/**', '*.tgz'] },
  { files: ['**/*.js', '**/*.mjs'], ...js.configs.recommended, languageOptions: { globals: nodeGlobals } },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.strictTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Decoders of kernel and wire data check "impossible" cases on purpose.
      '@typescript-eslint/no-unnecessary-condition': 'off',
    },
  },
  {
    // Only src/kernel/netlink.ts may import the netlink package (design §2).
    files: ['src/**/*.ts'],
    ignores: ['src/kernel/netlink.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [{ name: 'netlink', message: 'Only src/kernel/netlink.ts talks netlink.' }] }] },
  },
)
