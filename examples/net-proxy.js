// The same proxy with node:net, for comparison (README, "Examples").
// Usage: node examples/net-proxy.js UPSTREAM_PORT [UPSTREAM_HOST]
'use strict'
const net = require('node:net')

const upstream = { host: process.argv[3] ?? '127.0.0.1', port: Number(process.argv[2]) }
const server = net.createServer({ allowHalfOpen: true }, (client) => {
  const remote = net.connect({ ...upstream, allowHalfOpen: true })
  client.pipe(remote).pipe(client) // pipe() waits for 'drain' and forwards the end
  client.on('error', () => remote.destroy())
  remote.on('error', () => client.destroy())
})
server.listen(0, '127.0.0.1', () => console.log(`listening 127.0.0.1:${server.address().port}`))
