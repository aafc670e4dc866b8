// The Storacha upload service for the pinsync tests: the real service logic of npm
// `@storacha/upload-api` (its `./test/context`: in-memory tables, a local HTTP bucket that takes
// the CAR PUTs, local storage-node servers), with a space provisioned for a test account.
//
// In front of it, on 127.0.0.1:<port>, an HTTP bridge as the w3-ucan-bridge spec describes it
// (POST /bridge, headers X-Auth-Secret + Authorization, JSON body {tasks: [[ability, with, nb]]},
// DAG-JSON receipts [{p, s}] back). That bridge is a CONTRACT FAKE: Storacha's own bridge lives in
// its hosted infrastructure (w3infra) and is on no registry. Each task becomes a real UCAN
// invocation, signed by the agent the secret derives, with the Authorization delegation as proof,
// executed by the real service, which checks the delegation chain as in production.
//
// Also on that port: the service itself at POST / (native UCAN invocations: the write path), a
// gateway stand-in and test-control routes (see below).
// Usage: node storacha.mjs <port>. Prints {"url": ...} once listening; runs until killed.
import http from 'node:http'
import crypto from 'node:crypto'
import { createContext } from '@storacha/upload-api/test/context'
import { provisionProvider } from '@storacha/upload-api/test/utils'
import { ed25519, Absentee } from '@ucanto/principal'
import { delegate, invoke, Delegation, Failure } from '@ucanto/core'
import { sha256 } from 'multiformats/hashes/sha2'
import { base64url } from 'multiformats/bases/base64'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import * as dagJSON from '@ipld/dag-json'

const port = Number(process.argv[2] || 0)
// upload-api's test storage nodes end every answer with response.destroy() ("otherwise it keep
// connection lingering"), which cuts a GET longer than a socket buffer short; the gateway
// stand-in reads blobs back through those GETs, so a GET is let finish.
const finishingGets = {
  ...http,
  createServer: (handler) => http.createServer((request, response) => {
    if (request.method === 'GET') response.destroy = () => response
    return handler(request, response)
  }),
}
const context = await createContext({ http: finishingGets, requirePaymentPlan: false })
// The test context's claims and indexing clients prove `assert/*` with a delegation of ucanto's
// default lifetime, 30 s: after that every space/index/add fails "Claim {"can":"assert/index"}
// is not authorized". Each is re-delegated without expiry (the audience there is the service
// signer itself), as a long-running service's would be.
for (const client of [context.claimsService, context.indexingService]) {
  const config = client.invocationConfig
  config.proofs = [await delegate({
    issuer: config.audience,
    audience: config.issuer,
    capabilities: config.proofs[0].capabilities,
    expiration: Infinity,
  })]
}
const owner = await ed25519.generate()

// A new space, delegated wholly to `owner` and provisioned for a (did:mailto) account, as
// `storacha space create` + `provision` do it.
async function registerSpace(audience, context, username) {
  const space = await ed25519.generate()
  const proof = await delegate({
    issuer: space,
    audience,
    capabilities: [{ can: '*', with: space.did() }],
    // ucanto's default is 30 s from now: the tokens would stop working half way into a test.
    expiration: Infinity,
  })
  const account = Absentee.from({ id: `did:mailto:test.storacha.network:${username}` })
  const provisioned = await provisionProvider({
    service: context.id, agent: audience, space, account, connection: context.connection,
  })
  if (provisioned.out.error) throw new Error(`provisioning failed: ${provisioned.out.error.message}`)
  return { proof, spaceDid: space.did() }
}

// The spec's derivation: agent key = ed25519 from sha256(secret).
async function deriveAgent(secret) {
  const { digest } = await sha256.digest(secret)
  return ed25519.Signer.derive(digest)
}

// What `storacha bridge generate-tokens <space> --can ...` prints, for a space.
const abilities = ['space/blob/add', 'space/blob/get/0/1', 'space/blob/list', 'space/blob/remove',
  'space/index/add', 'store/get', 'store/list', 'store/remove', 'upload/add', 'upload/get',
  'upload/list', 'upload/remove', 'usage/report']
async function generateTokens(owner, proof, spaceDid, can = abilities) {
  const secret = crypto.randomBytes(32)
  const agent = await deriveAgent(secret)
  const grant = await delegate({
    issuer: owner,
    audience: agent,
    capabilities: can.map((ability) => ({ can: ability, with: spaceDid })),
    proofs: [proof],
    expiration: Infinity,
  })
  const archived = await grant.archive()
  if (archived.error) throw archived.error
  return { xAuthSecret: base64url.encode(secret), authorization: base64url.encode(archived.ok) }
}

// TEST CONTROL (not Storacha's API): a fresh provisioned space and its tokens, so each test
// has an empty space of its own; more tokens for a space, granting some abilities only.
let spaces = 0
const proofs = new Map()
async function freshSpace() {
  spaces += 1
  const { proof, spaceDid } = await registerSpace(owner, context, `pinsync-${spaces}`)
  proofs.set(spaceDid, proof)
  return { space: spaceDid, ...(await generateTokens(owner, proof, spaceDid)) }
}
async function moreTokens({ space, abilities: can }) {
  return { space, ...(await generateTokens(owner, proofs.get(space), space, can)) }
}

// TEST CONTROL (not Storacha's API): writes switched off as the hosted service runs them since
// 2026-05-15 (WRITES_DISABLED=true; storacha/upload-service issue #709). upload-api after 2.8.4
// does it in src/disable-writes.js (upload-service PR #708): each user-facing write in this
// list gets a handler answering, before any validation, the error receipt
// {name: 'ServiceUnavailable', message: 'The "<can>" capability is currently disabled.'};
// reads are untouched. `removed` abilities lose their handler altogether, so ucanto answers
// HandlerNotFound, as upload-api >= 3.1.0 does for store/add (upload-service PR #643).
const WRITES = ['space/blob/add', 'space/blob/remove', 'space/blob/replicate', 'space/index/add',
  'upload/add', 'upload/remove', 'store/add', 'store/remove']
class ServiceUnavailable extends Failure {
  get name() { return 'ServiceUnavailable' }
}
const service = context.connection.channel.service
const handlers = new Map() // ability -> [parent object, leaf name, its original handler]
function handlerOf(can) {
  if (!handlers.has(can)) {
    const path = can.split('/')
    const parent = path.slice(0, -1).reduce((node, part) => node?.[part], service)
    const leaf = path[path.length - 1]
    handlers.set(can, [parent, leaf, parent?.[leaf]])
  }
  return handlers.get(can)
}
function setWrites({ disabled = false, removed = [] }) {
  for (const can of new Set([...WRITES, ...removed, ...handlers.keys()])) {
    const [parent, leaf, original] = handlerOf(can)
    if (!parent || !original) continue
    if (removed.includes(can)) delete parent[leaf]
    else if (disabled && WRITES.includes(can)) {
      parent[leaf] = async () => ({
        error: new ServiceUnavailable(`The "${can}" capability is currently disabled.`),
      })
    } else parent[leaf] = original
  }
}

// TEST CONTROL (not Storacha's API): the indexes claimed for a content CID (space/index/add
// publishes an assert/index claim to the indexing service, or to the legacy content-claims
// service for a legacy provider), read from the test context's stores.
async function indexes(pathname, response) {
  const content = CID.parse(pathname.slice('/_test/indexes/'.length))
  const query = await context.indexingService.queryClaims({ hashes: [content.multihash] })
  const legacy = await context.claimsService.read(content.multihash)
  const claims = [...(query.ok?.claims?.values() ?? []), ...(legacy.ok ?? [])]
  const found = claims.filter((claim) => claim.type === 'assert/index').map((claim) => `${claim.index}`)
  answer(response, 200, { indexes: found })
}

async function jsonBody(request) {
  const chunks = []
  for await (const chunk of request) chunks.push(chunk)
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {}
}

function answer(response, status, body) {
  response.writeHead(status, { 'Content-Type': 'application/json' })
  response.end(typeof body === 'string' ? body : JSON.stringify(body))
}

async function bridge(request, response) {
  const chunks = []
  for await (const chunk of request) chunks.push(chunk)
  const secretHeader = request.headers['x-auth-secret']
  const authHeader = request.headers['authorization']
  if (!secretHeader || !authHeader) {
    return answer(response, 401, { error: { message: 'X-Auth-Secret and Authorization are required' } })
  }
  let signer, delegation
  try {
    signer = await deriveAgent(base64url.decode(secretHeader))
    const extracted = await Delegation.extract(base64url.decode(authHeader))
    if (extracted.error) throw extracted.error
    delegation = extracted.ok
  } catch {
    return answer(response, 401, { error: { message: 'could not decode the auth headers' } })
  }
  let tasks
  try {
    // dag-json: {"/": "<cid>"} in the arguments are links, as the service's schemas want.
    tasks = dagJSON.decode(Buffer.concat(chunks)).tasks
    if (!Array.isArray(tasks) || !tasks.every((t) => Array.isArray(t) && t.length === 3)) throw new Error()
  } catch {
    return answer(response, 400, { error: { message: 'body must be {"tasks": [[ability, with, nb], ...]}' } })
  }
  const invocations = tasks.map(([can, resource, nb]) => invoke({
    issuer: signer,
    audience: context.id,
    capability: { can, with: resource, nb },
    proofs: [delegation],
    // Unique per request: the service answers a repeated invocation (same CID) from its store
    // of receipts, so a second upload/list in the same second would see the first's answer.
    nonce: crypto.randomUUID(),
  }))
  const receipts = await context.connection.execute(...invocations)
  // The answer as the hosted bridge gives it today: one {p: <receipt outcome>, s: <signature>}
  // per task, DAG-JSON (storacha/w3infra upload-api/functions/bridge.js, buildBridgeReceipts
  // and serializeBridgeReceipts; storacha/docs how-to/http-bridge). An older bridge answered
  // {data, sig}; the backend reads both.
  const out = receipts.map((receipt) => {
    const { ocm, sig } = receipt.root.data
    return { p: ocm, s: sig }
  })
  response.writeHead(200, { 'Content-Type': 'application/vnd.ipld.dag-json' })
  response.end(dagJSON.stringify(out))
}

// The upload service itself at its root, as https://up.storacha.network/ takes UCAN invocations:
// a CAR of invocations in, a CAR of receipts out (ucanto's CAR transport). Native clients
// (`@storacha/client`, pinsync's) write through here; the bridge cannot carry the blob protocol.
async function ucanto(request, response) {
  const chunks = []
  for await (const chunk of request) chunks.push(chunk)
  const headers = Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, String(v)]))
  const { status = 200, headers: out = {}, body } = await context.connection.channel.request({
    headers, body: new Uint8Array(Buffer.concat(chunks)),
  })
  response.writeHead(status, out)
  response.end(Buffer.from(body))
}

// A gateway stand-in (CONTRACT FAKE of `GET https://storacha.link/ipfs/<CAR CID>`, which serves a
// stored shard as its bytes). As storacha/freeway's withCarBlockHandler: the blob stored under
// the CID's multihash first (the blob protocol: here on the local storage nodes), then the CAR
// the legacy bucket received under the CID (store/add).
async function gateway(pathname, response) {
  const shard = pathname.slice('/ipfs/'.length)
  let digest
  try { digest = CID.parse(shard).multihash } catch { return answer(response, 400, { error: { message: 'bad CID' } }) }
  const key = base58btc.encode(digest.bytes)
  for (const node of context.storageProviders) {
    const base = node.baseURL ?? `http://127.0.0.1:${node.server.address().port}`
    const found = await fetch(new URL(`/${key}/${key}.blob`, base))
    if (found.status === 200) return send(response, new Uint8Array(await found.arrayBuffer()))
  }
  for (const [name, bytes] of context.carStoreBucket.content) {
    if (name.endsWith(`/${shard}.car`)) return send(response, bytes)
  }
  answer(response, 404, { error: { message: 'not found' } })
}

function send(response, bytes) {
  response.writeHead(200, { 'Content-Type': 'application/vnd.ipld.car', 'Content-Length': bytes.length })
  response.end(Buffer.from(bytes))
}

const sockets = new Set()
const server = http.createServer((request, response) => {
  const { pathname } = new URL(request.url, 'http://localhost')
  const failed = (error) => {
    process.stderr.write(`storacha: ${error?.stack || error}\n`)
    answer(response, 500, { error: { message: 'internal error' } })
  }
  if (request.method === 'POST' && pathname === '/bridge') {
    bridge(request, response).catch(failed)
  } else if (request.method === 'POST' && pathname === '/') {
    ucanto(request, response).catch(failed)
  } else if (request.method === 'GET' && pathname.startsWith('/ipfs/')) {
    gateway(pathname, response).catch(failed)
  } else if (request.method === 'POST' && pathname === '/_test/space') {
    freshSpace().then((made) => answer(response, 200, made), failed)
  } else if (request.method === 'POST' && pathname === '/_test/tokens') {
    jsonBody(request).then(moreTokens).then((made) => answer(response, 200, made), failed)
  } else if (request.method === 'GET' && pathname.startsWith('/_test/indexes/')) {
    indexes(pathname, response).catch(failed)
  } else if (request.method === 'POST' && pathname === '/_test/writes') {
    jsonBody(request).then((settings) => { setWrites(settings); answer(response, 200, {}) }, failed)
  } else {
    answer(response, 404, { error: { message: 'not found' } })
  }
})
server.on('connection', (socket) => {
  sockets.add(socket)
  socket.on('close', () => sockets.delete(socket))
})
// SIGUSR1 closes the listener and every connection (the service "goes down" but keeps its
// memory); SIGUSR2 listens again on the same port. Tests stop and restart the server this way.
process.on('SIGUSR1', () => {
  server.close()
  for (const socket of sockets) socket.destroy()
})
process.on('SIGUSR2', () => server.listen(bound, '127.0.0.1'))
let bound = port
server.listen(port, '127.0.0.1', () => {
  bound = server.address().port
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${bound}` }) + '\n')
})
