// aedes (MQTT 3.1.1 broker, Node) for the embermq integration tests.
//
// Usage: node aedes-broker.js [tcpPort] [wsPort]
// Ports default to 0 (the OS picks). Once both listeners accept, prints one
// JSON line on stdout: {"tcp": <port>, "ws": <port>}. MQTT over WebSocket is
// served on any path of the HTTP listener (the client uses /mqtt).
// Exits when stdin closes, so it never outlives the test process that
// spawned it.
'use strict'

const net = require('net')
const http = require('http')
const { Aedes } = require('aedes')
const websocketStream = require('websocket-stream')

function listen (server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve(server.address().port))
  })
}

async function main () {
  const tcpPort = Number(process.argv[2] || 0)
  const wsPort = Number(process.argv[3] || 0)
  const broker = await Aedes.createBroker()

  const tcpServer = net.createServer(broker.handle)
  const httpServer = http.createServer()
  websocketStream.createServer({ server: httpServer }, broker.handle)

  const ports = {
    tcp: await listen(tcpServer, tcpPort),
    ws: await listen(httpServer, wsPort)
  }
  process.stdout.write(JSON.stringify(ports) + '\n')

  process.stdin.on('end', () => process.exit(0))
  process.stdin.on('close', () => process.exit(0))
  process.stdin.resume()
}

main().catch((err) => {
  console.error('aedes-broker:', err)
  process.exit(1)
})
