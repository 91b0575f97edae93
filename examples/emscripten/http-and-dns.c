// An HTTP GET and a DNS query with nothing but BSD sockets, run in the browser: Emscripten's
// PROXY_POSIX_SOCKETS forwards every socket call to wasmnet's /posix/ endpoint, which makes the
// real connection under its policy. Build and run: see README.md.
//
// Arguments come from the page's query string (key=value):
//   bridge=ws://127.0.0.1:9000/posix/   the wasmnet endpoint (shell.html fills in a default)
//   get=HOST:PORT/PATH                  fetch http://HOST:PORT/PATH with HTTP/1.0
//   dns=NAME                            ask for NAME's A records over UDP ...
//   resolver=IP:PORT                    ... at this resolver (default 127.0.0.1:53)

#include <arpa/inet.h>
#include <emscripten/posix_socket.h>
#include <emscripten/websocket.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const char *arg(int argc, char **argv, const char *key) {
  size_t n = strlen(key);
  for (int i = 1; i < argc; i++)
    if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
  return NULL;
}

static void http_get(const char *target) {
  // HOST:PORT/PATH
  char host[256], port[16], path[512] = "/";
  const char *slash = strchr(target, '/');
  const char *colon = strchr(target, ':');
  if (!colon || (slash && colon > slash)) {
    printf("get: want HOST:PORT/PATH, got %s\n", target);
    return;
  }
  snprintf(host, sizeof host, "%.*s", (int)(colon - target), target);
  snprintf(port, sizeof port, "%.*s", (int)(slash ? slash - colon - 1 : (int)strlen(colon + 1)), colon + 1);
  if (slash) snprintf(path, sizeof path, "%s", slash);

  struct addrinfo hints, *res;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    printf("get: getaddrinfo(%s): %s\n", host, gai_strerror(rc));
    return;
  }
  int fd = -1;
  for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      printf("get: connect: %s\n", strerror(errno)); // EACCES: the policy said no
      shutdown(fd, SHUT_RDWR);                       // close() is not forwarded; this frees the socket
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) return;

  char request[1024];
  int len = snprintf(request, sizeof request, "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host);
  for (int sent = 0; sent < len;) {
    ssize_t n = send(fd, request + sent, len - sent, 0);
    if (n <= 0) {
      printf("get: send: %s\n", strerror(errno));
      shutdown(fd, SHUT_RDWR);
      return;
    }
    sent += n;
  }
  char buf[4096], status[256] = "";
  long total = 0;
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
    if (total == 0) {
      // recv does not NUL-terminate: look for the line's end within the n bytes received only.
      const char *cr = memchr(buf, '\r', (size_t)n), *lf = memchr(buf, '\n', (size_t)n);
      const char *end = cr && (!lf || cr < lf) ? cr : lf ? lf : buf + n;
      snprintf(status, sizeof status, "%.*s", (int)(end - buf), buf);
    }
    total += n;
  }
  if (n < 0) printf("get: recv: %s\n", strerror(errno));
  shutdown(fd, SHUT_RDWR);
  printf("get: %s -> \"%s\", %ld bytes\n", target, status, total);
}

// Appends NAME as DNS labels; returns the new length or -1.
static int put_name(unsigned char *q, int at, const char *name) {
  while (*name) {
    const char *dot = strchr(name, '.');
    int label = dot ? (int)(dot - name) : (int)strlen(name);
    if (label == 0 || label > 63 || at + label + 2 > 300) return -1;
    q[at++] = (unsigned char)label;
    memcpy(q + at, name, label);
    at += label;
    name += label + (dot ? 1 : 0);
  }
  q[at++] = 0;
  return at;
}

// Skips a (possibly compressed) name; returns the offset after it or -1.
static int skip_name(const unsigned char *m, int len, int at) {
  while (at < len) {
    if (m[at] == 0) return at + 1;
    if ((m[at] & 0xc0) == 0xc0) return at + 2 <= len ? at + 2 : -1;
    at += m[at] + 1;
  }
  return -1;
}

static void dns_query(const char *name, const char *resolver) {
  char ip[64];
  const char *colon = strrchr(resolver, ':');
  if (!colon || colon - resolver >= (long)sizeof ip) {
    printf("dns: want resolver=IP:PORT, got %s\n", resolver);
    return;
  }
  snprintf(ip, sizeof ip, "%.*s", (int)(colon - resolver), resolver);
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_port = htons(atoi(colon + 1));
  if (inet_pton(AF_INET, ip, &to.sin_addr) != 1) {
    printf("dns: %s is not an IPv4 address\n", ip);
    return;
  }

  unsigned char q[512] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}; // id, RD, one question
  int qlen = put_name(q, 12, name);
  if (qlen < 0) {
    printf("dns: bad name %s\n", name);
    return;
  }
  q[qlen++] = 0, q[qlen++] = 1; // type A
  q[qlen++] = 0, q[qlen++] = 1; // class IN

  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    printf("dns: socket: %s\n", strerror(errno));
    return;
  }
  struct timeval wait = {3, 0}; // recvfrom gives up after 3 s with EAGAIN
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  if (sendto(fd, q, qlen, 0, (struct sockaddr *)&to, sizeof to) != qlen) {
    printf("dns: sendto %s: %s\n", resolver, strerror(errno));
    shutdown(fd, SHUT_RDWR);
    return;
  }
  unsigned char m[1500];
  struct sockaddr_in from;
  socklen_t fromlen = sizeof from;
  ssize_t len = recvfrom(fd, m, sizeof m, 0, (struct sockaddr *)&from, &fromlen);
  shutdown(fd, SHUT_RDWR);
  if (len < 0) {
    printf("dns: recvfrom: %s\n", strerror(errno));
    return;
  }
  if (len < 12 || m[0] != 0x12 || m[1] != 0x34) {
    printf("dns: not an answer to our query (%zd bytes)\n", len);
    return;
  }
  int answers = (m[6] << 8) | m[7], rcode = m[3] & 0x0f;
  int at = skip_name(m, len, 12);
  at = at < 0 ? -1 : at + 4;
  printf("dns: %s: rcode %d, %d answers from %s:%d\n", name, rcode, answers, inet_ntoa(from.sin_addr), ntohs(from.sin_port));
  for (int i = 0; i < answers && at > 0; i++) {
    at = skip_name(m, len, at);
    if (at < 0 || at + 10 > len) break;
    int type = (m[at] << 8) | m[at + 1], rdlen = (m[at + 8] << 8) | m[at + 9];
    at += 10;
    if (at + rdlen > len) break;
    if (type == 1 && rdlen == 4) printf("dns: %s A %d.%d.%d.%d\n", name, m[at], m[at + 1], m[at + 2], m[at + 3]);
    at += rdlen;
  }
}

int main(int argc, char **argv) {
  const char *bridge = arg(argc, argv, "bridge");
  if (!bridge) {
    printf("no bridge=ws://.../posix/ argument\n");
    return 1;
  }
  EMSCRIPTEN_WEBSOCKET_T ws = emscripten_init_websocket_to_posix_socket_bridge(bridge);
  unsigned short state = 0; // 0 CONNECTING, 1 OPEN
  for (int i = 0; i < 500 && state == 0; i++) {
    emscripten_websocket_get_ready_state(ws, &state);
    if (state == 0) usleep(20 * 1000);
  }
  if (state != 1) {
    printf("could not open %s\n", bridge);
    return 1;
  }
  const char *v;
  if ((v = arg(argc, argv, "get"))) http_get(v);
  if ((v = arg(argc, argv, "dns"))) dns_query(v, arg(argc, argv, "resolver") ? arg(argc, argv, "resolver") : "127.0.0.1:53");
  printf("done\n");
  return 0;
}
