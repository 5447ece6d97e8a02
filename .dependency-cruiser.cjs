/**
 * Sluice's import boundaries (`npm run lint`: depcruise src). README "Architecture" draws them:
 *
 *   entry points    cli.ts, server.ts (wire the parts), commands/ (the CLI), api/ (the HTTP control plane and
 *                   console), query/ (reading outputs back, for commands and the console)
 *   the chain       sources -> buffer -> delivery -> sinks: a layer imports only what is below it, except
 *                   that delivery reads the buffer's contract (the buffer imports neither side of it)
 *   beside          store/ (tenants, destinations, events), observability/ (logs, metrics): used by the
 *                   layers, using none of them
 *   shared          config/ (which composes the schemas of delivery and sinks), and the leaves http/,
 *                   time/, json/, transforms/, which import nothing else of src
 *
 * The layer rules are named for the folder they constrain, so a broken one says where to look. Type-only
 * imports count (tsPreCompilationDeps): a type is a dependency on its module too.
 *
 * Violations still known are listed in .dependency-cruiser-known-violations.json (`--ignore-known`): each
 * one is a move in progress elsewhere. Regenerate it with `npm run lint:baseline` only when one goes away.
 */

/** Folders of src, as path patterns. */
const ENTRY = '^src/(cli|server)\\.ts$';
const folders = (...names) => `^src/(${names.join('|')})/`;

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Modules that import each other cannot be understood, tested or moved one at a time.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'src-not-to-test-or-bench',
      severity: 'error',
      comment: 'The product does not depend on its tests or benchmarks.',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'entry-points-are-imported-by-none',
      severity: 'error',
      comment: 'cli.ts and server.ts wire everything together: only cli.ts starts server.ts.',
      from: { path: '^src/', pathNot: '^src/cli\\.ts$' },
      to: { path: ENTRY },
    },
    {
      name: 'api-not-to-commands',
      severity: 'error',
      comment: 'The HTTP API does not call the CLI: what both need lives below them (query/, sources/, store/).',
      from: { path: '^src/api/' },
      to: { path: folders('commands') },
    },
    {
      name: 'commands-not-to-api',
      severity: 'error',
      comment: 'The CLI talks to a running server over HTTP, not through its route modules.',
      from: { path: '^src/commands/' },
      to: { path: folders('api') },
    },
    {
      name: 'query-below-its-callers',
      severity: 'error',
      comment: 'query/ reads what outputs wrote, for commands/ and the console: it imports neither, nor the ingest side.',
      from: { path: '^src/query/' },
      to: { path: folders('api', 'commands', 'sources', 'buffer', 'store', 'observability') },
    },
    {
      name: 'sources-below-the-entry-points',
      severity: 'error',
      comment: 'Sources take decisions and events in and write them down; the routes that call them (api/) are above.',
      from: { path: '^src/sources/' },
      to: { path: folders('api', 'commands', 'query') },
    },
    {
      name: 'buffer-not-up',
      severity: 'error',
      comment: 'The buffer is the contract between sources (which write it) and delivery (which reads it): it imports neither.',
      from: { path: '^src/buffer/' },
      to: { path: folders('sources', 'delivery', 'sinks', 'api', 'commands', 'query') },
    },
    {
      name: 'delivery-not-up',
      severity: 'error',
      comment: 'Delivery reads the buffer and the store and writes to sinks; it never reaches back to ingest.',
      from: { path: '^src/delivery/' },
      to: { path: folders('sources', 'api', 'commands', 'query') },
    },
    {
      name: 'sinks-not-up',
      severity: 'error',
      comment: 'A sink writes one object where it is told: it knows nothing of delivery, the buffer, ingest or the API.',
      from: { path: '^src/sinks/' },
      to: { path: folders('sources', 'buffer', 'delivery', 'api', 'commands', 'query') },
    },
    {
      name: 'store-beside',
      severity: 'error',
      comment: 'The store is used by sources, delivery and the API; it uses none of them.',
      from: { path: '^src/store/' },
      to: { path: folders('sources', 'buffer', 'delivery', 'sinks', 'api', 'commands', 'query', 'observability') },
    },
    {
      name: 'observability-beside',
      severity: 'error',
      comment: 'Logs and metrics are used by every layer; metrics read the buffer and the store through their contracts only.',
      from: { path: '^src/observability/' },
      to: { path: `${folders('sources', 'delivery', 'sinks', 'api', 'commands', 'query')}|^src/(buffer|store)/(?!types\\.ts$)` },
    },
    {
      name: 'config-below-the-runtime',
      severity: 'error',
      comment: 'The configuration composes the schemas of delivery (key layouts) and sinks (providers); nothing that runs.',
      from: { path: '^src/config/' },
      to: { path: folders('sources', 'buffer', 'store', 'observability', 'api', 'commands', 'query') },
    },
    {
      name: 'shared-are-leaves',
      severity: 'error',
      comment: 'http/, time/, json/ and transforms/ are used everywhere, so they import nothing else of src.',
      from: { path: folders('http', 'time', 'json', 'transforms') },
      to: { path: '^src/', pathNot: folders('http', 'time', 'json', 'transforms') },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // (ESM TypeScript imports name the compiled file, `./x.js`: dependency-cruiser resolves them to `./x.ts`)
    enhancedResolveOptions: {
      extensions: ['.ts', '.js', '.json'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      exportsFields: ['exports'],
      mainFields: ['module', 'main', 'types'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
