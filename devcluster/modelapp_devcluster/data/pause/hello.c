/*
 * A tiny static HTTP server used as a test workload on the real node: no image can be pulled
 * from a public registry, so the test builds its own image from this file.
 *
 * Contract: listens on 0.0.0.0:PORT (argv[1], default 8080) inside the pod's network
 * namespace; answers every request with "200 OK" and the body "hello from <hostname>\n"
 * (the pod name), so a test can tell which pod answered; exits 0 on SIGTERM or SIGINT.
 *
 * Client mode, for checking Services from inside a pod: `hello probe IPV4 PORT` sends one GET
 * and exits 0 only when the reply is "200 OK" with a body starting "hello from ".
 *
 * Build: gcc -static -Os -s -o hello hello.c
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_stop(int signo) {
    (void)signo;
    _exit(0);
}

static void answer(int client, const char *host) {
    char request[4096];
    ssize_t got = recv(client, request, sizeof(request) - 1, 0);
    if (got <= 0) {
        return;
    }
    char body[512];
    int body_len = snprintf(body, sizeof(body), "hello from %s\n", host);
    char reply[1024];
    int reply_len = snprintf(reply, sizeof(reply),
                             "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                             "Connection: close\r\n\r\n%s",
                             body_len, body);
    (void)send(client, reply, (size_t)reply_len, MSG_NOSIGNAL);
}

static int probe(const char *ip, const char *port) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(port));
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    if (sock < 0 || inet_pton(AF_INET, ip, &addr.sin_addr) != 1 ||
        connect(sock, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        perror("hello probe: connect");
        return 1;
    }
    const char *request = "GET / HTTP/1.0\r\n\r\n";
    (void)send(sock, request, strlen(request), MSG_NOSIGNAL);
    char reply[2048];
    size_t total = 0;
    ssize_t got;
    while (total < sizeof(reply) - 1 && (got = recv(sock, reply + total, sizeof(reply) - 1 - total, 0)) > 0) {
        total += (size_t)got;
    }
    reply[total] = '\0';
    close(sock);
    const char *body = strstr(reply, "\r\n\r\n");
    int ok = strncmp(reply, "HTTP/1.0 200", 12) == 0 && body && strncmp(body + 4, "hello from ", 11) == 0;
    printf("%s", ok ? body + 4 : "hello probe: unexpected reply\n");
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "probe") == 0) {
        return probe(argv[2], argv[3]);
    }
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    char host[256] = "unknown";
    (void)gethostname(host, sizeof(host) - 1);
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    int server = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (server < 0 || bind(server, (struct sockaddr *)&addr, sizeof(addr)) || listen(server, 64)) {
        perror("hello: listen");
        return 1;
    }
    printf("hello: listening on :%d\n", port);
    fflush(stdout);
    for (;;) {
        int client = accept(server, NULL, NULL);
        if (client >= 0) {
            answer(client, host);
            close(client);
        }
    }
}
