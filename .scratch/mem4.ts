import { graphBuilder } from '../drivers/portable/graph.ts';
import { loadModel } from '../src/model/load.ts';
const gc = () => (globalThis as any).gc();
const mu = () => { gc(); const m = process.memoryUsage(); return `rss ${(m.rss/2**20).toFixed(0)} ab ${(m.arrayBuffers/2**20).toFixed(0)}`; };
const m = loadModel(process.argv[2]!);
console.log('loaded', mu());
function f(enc: boolean) { const b = graphBuilder({ config: m.config, weights: m.weights, numSlots: 256 }); if (enc) return b.encode().byteLength; return 0; }
f(false);
console.log('built+dropped', mu());
f(true);
console.log('encoded+dropped', mu());
await new Promise((r) => setTimeout(r, 100));
console.log('later', mu());
