import { graphBuilder } from '../drivers/portable/graph.ts';
import { loadModel } from '../src/model/load.ts';
const gc = () => (globalThis as any).gc();
const mu = () => { gc(); const m = process.memoryUsage(); return `rss ${(m.rss/2**20).toFixed(0)} ab ${(m.arrayBuffers/2**20).toFixed(0)}`; };
const m = loadModel(process.argv[2]!);
console.log('loaded', mu());
{ const b = graphBuilder({ config: m.config, weights: m.weights, numSlots: 256 }); console.log('built', mu()); const g = b.encode(); console.log('encoded', mu(), g.byteLength / 2 ** 20, g.buffer.byteLength / 2 ** 20); }
await new Promise((r) => setTimeout(r, 100));
console.log('dropped', mu());
