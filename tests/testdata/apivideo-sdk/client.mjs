// Lists videos twice with api.video's published Node.js client: once with a
// fresh access token, and once after that token has expired, which the
// client must notice (a 401) and recover from by minting a new one.
// Then a sandbox key on the production host, which must be refused with
// problem details the client turns into an ApiVideoError.
// Prints one JSON line per call for tests/apivideo_sdk_test.go.
import ApiVideoClient from '@api.video/nodejs-client';

const [baseUri, apiKey, waitMs, sandboxKey] = process.argv.slice(2);

async function list(client, label) {
  try {
    const res = await client.videos.list();
    console.log(JSON.stringify({ call: label, ok: true, videos: res.data.map((v) => v.videoId) }));
  } catch (err) {
    console.log(JSON.stringify({
      call: label,
      ok: false,
      apiVideoError: err?.constructor?.name === 'ApiVideoError',
      status: err?.code ?? err?.response?.statusCode ?? 0,
      error: String(err?.message ?? err),
      details: typeof err?.problemDetails === 'string' ? err.problemDetails : JSON.stringify(err?.problemDetails ?? null),
    }));
  }
}

const client = new ApiVideoClient({ apiKey, baseUri });
await list(client, 'fresh token');
await new Promise((resolve) => setTimeout(resolve, Number(waitMs)));
await list(client, 'expired token');
await list(new ApiVideoClient({ apiKey: sandboxKey, baseUri }), 'sandbox key on production');
