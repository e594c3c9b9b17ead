// Preloaded instead of loopback.cjs into the conformance suite's Node
// servers, which listen(0) and read address() at once: the host loopback.cjs
// adds would make listen asynchronous. This keeps them on 127.0.0.1 by
// wrapping net.Server's _listen2, the hook Node keeps for this ("still named
// like this to avoid breaking code that wraps this method"): no host lookup
// is added, so listen stays synchronous.
'use strict';
const net = require('net');
const listen2 = net.Server.prototype._listen2;
net.Server.prototype._listen2 = function (address, port, addressType, backlog, fd, flags) {
  if (!address && !(fd >= 0)) {
    address = '127.0.0.1';
    addressType = 4;
  }
  return listen2.call(this, address, port, addressType, backlog, fd, flags);
};
