// A real s3rver in its own process, so its CPU is visible apart from Sluice's. Prints its port as JSON.
import S3rver from 's3rver';

const [directory, portText] = process.argv.slice(2);
const server = new S3rver({
  port: Number(portText ?? 0),
  address: '127.0.0.1',
  silent: true,
  directory,
  configureBuckets: [{ name: 'logs', configs: [] }],
});
const address = (await server.run()) as unknown as { port: number };
process.stdout.write(JSON.stringify({ port: address.port }) + '\n');
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
