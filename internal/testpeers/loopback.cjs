// Preloaded into every Node MCP peer the tests start (NODE_OPTIONS="--require
// <this file>"): the npm servers listen on all interfaces by default, and a
// test server must never be reachable from off the machine. Any
// net.Server.listen without a host, or with an unspecified one, binds
// 127.0.0.1 instead. Unix sockets and explicit loopback hosts are untouched.
'use strict';
const net = require('net');
const unspecified = new Set(['0.0.0.0', '::', '']);
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
    else if (unspecified.has(args[1])) args[1] = '127.0.0.1';
  } else if (first && typeof first === 'object' && !first.path) {
    if (!first.host || unspecified.has(first.host)) args[0] = { ...first, host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
