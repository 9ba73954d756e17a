import { PortableDriver } from '../drivers/portable/driver.ts';
import { loadModel } from '../src/model/load.ts';
const m = loadModel(process.argv[2]!);
for (const ext of [false, true, false, true]) {
  const t0 = performance.now();
  const d = await PortableDriver.create(m, { numPages: 16, pageSize: 16, threads: 2, externalData: ext });
  console.log(ext ? 'external' : 'inline  ', (performance.now() - t0).toFixed(0), 'ms');
  await d.close();
}
