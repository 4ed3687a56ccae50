/*
 * A tiny static HTTP server used as a test workload on the real node: no image can be pulled
 * from a public registry, so the test builds its own image from this file.
 *
 * Contract: listens on 0.0.0.0:PORT (argv[1], default 8080) inside the pod's network
 * namespace; answers every request with "200 OK" and the body "hello from <hostname>\n"
 * (the pod name), so a test can tell which pod answered; exits 0 on SIGTERM or SIGINT.
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

int main(int argc, char **argv) {
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
