#!/usr/bin/env node
// Checks the runtime before anything else: the project needs Node.js 24
// (TypeScript type stripping, WebAssembly JSPI). npm scripts and `npx pie`
// run the Node 24 that `npm install` put in node_modules.
if (typeof WebAssembly.Suspending !== 'function' || Number(process.versions.node.split('.')[0]) < 24) {
  console.error(
    `pie: Node.js ${process.version} lacks WebAssembly JSPI (WebAssembly.Suspending); pie-gateway needs Node.js 24 or newer.\n` +
      'Run it through npm from the repository (npm start, npx pie ...), which uses the Node 24 installed by npm install.',
  );
  process.exit(1);
}
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
