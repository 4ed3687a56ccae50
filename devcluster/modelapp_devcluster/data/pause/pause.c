/*
 * The pod sandbox ("pause") process, built here because no public registry is reachable.
 *
 * Contract: it is PID 1 of a pod's shared namespaces. It does nothing but hold them open,
 * reap any orphaned children that get re-parented to it (so no zombies pile up when
 * shareProcessNamespace is on), and exit 0 promptly on SIGTERM or SIGINT so that the
 * runtime can tear the sandbox down without waiting for a SIGKILL.
 *
 * Build: gcc -static -Os -s -o pause pause.c
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_stop(int signo) {
    (void)signo;
    stop_requested = 1;
}

static void on_child(int signo) {
    (void)signo;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int install(int signo, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = signo == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : 0;
    return sigaction(signo, &action, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("modelapp-pause 1");
        return 0;
    }
    if (getpid() != 1) {
        fputs("pause: warning: not running as PID 1\n", stderr);
    }
    if (install(SIGTERM, on_stop) || install(SIGINT, on_stop) || install(SIGCHLD, on_child)) {
        perror("pause: sigaction");
        return 1;
    }
    while (!stop_requested) {
        pause();
    }
    return 0;
}
