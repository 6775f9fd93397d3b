#!/usr/bin/env bash
# `make run`'s process handling: the web server and the worker side by side.
#
# usage: supervise.sh PARENT_PID WEB_COMMAND WORKER_COMMAND
#
# A worker that exits on its own is started again, after 1 s, then 2, 4, ... up to 30 s when it
# keeps exiting (the delay starts again at 1 s once a worker has run for a minute), and the web
# server goes on answering meanwhile; what the dead worker left behind (its embedded beat) is
# killed first. A web server that exits stops everything: gunicorn already restarts its own
# dead processes, so its master exiting means it cannot serve (the port taken, a broken
# setting), which starting it again would not mend.
#
# Stops both when Ctrl-C (SIGINT), SIGTERM or a hangup (the terminal closed) reaches it, when
# the web server exits, or when PARENT_PID (the make recipe's shell) is gone. A stop asked for
# prints "Stopped." and exits 0; a web server that exited on its own makes it exit 1.
#
# gunicorn shares this script's process group, so Ctrl-C reaches it and it stops at once. The
# worker has a group of its own (so that its leftovers can be found); it gets SIGTERM from here:
# Celery starts a warm shutdown, which may wait for a long chunk task, so after RUN_STOP_GRACE
# seconds (default 1) the worker gets SIGQUIT, a cold shutdown. That loses nothing: tasks are
# acknowledged late, so the interrupted one is delivered again on the next start, and a chunk's
# work commits in one transaction with its done mark.
set -u
parent=$1 web_command=$2 worker_command=$3
grace_tenths=$(( ${RUN_STOP_GRACE:-1} * 10 ))
first_delay=1 longest_delay=30 steady_seconds=60

interrupted=
trap 'interrupted=1' INT TERM HUP

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# `wait` on a background sleep returns as soon as a trapped signal arrives.
pause() {
    sleep "$1" &
    wait $! 2>/dev/null
}

# Microseconds since the epoch: the delays are shorter than `$SECONDS`' whole seconds could time.
now() { echo "${EPOCHREALTIME/./}"; }

start_worker() {
    set -m
    $worker_command &
    worker=$!
    set +m
    worker_started=$(now)
}

start_worker
$web_command &
web=$!

delay=$first_delay restart_at=
while [ -z "$interrupted" ] && alive "$web" && alive "$parent"; do
    if [ -n "$worker" ] && ! alive "$worker"; then
        # Ctrl-C may reach this shell a moment after a child that died of it: look again before
        # calling it a crash.
        pause 0.5
        [ -n "$interrupted" ] && break
        wait "$worker"
        status=$?
        kill -KILL -- "-$worker" 2>/dev/null
        (( $(now) - worker_started >= steady_seconds * 1000000 )) && delay=$first_delay
        echo "The worker exited (status $status); starting it again in $delay s." >&2
        worker= restart_at=$(( $(now) + delay * 1000000 ))
        delay=$(( delay * 2 < longest_delay ? delay * 2 : longest_delay ))
    fi
    if [ -n "$restart_at" ] && (( $(now) >= restart_at )); then
        start_worker
        restart_at=
    fi
    if [ -n "$restart_at" ]; then pause 0.1; else pause 1; fi
done
# Ctrl-C reaches gunicorn in the same instant as this shell: it may exit before the trap above
# has run. Look again before calling it a crash.
if [ -z "$interrupted" ]; then
    pause 0.5
fi
alive "$parent" || interrupted=1

kill -TERM "$web" $worker 2>/dev/null
for _ in $(seq "$grace_tenths"); do
    alive "$web" || alive "$worker" || break
    sleep 0.1
done
kill -QUIT "$web" $worker 2>/dev/null
# A cold shutdown that hangs (a task that ignores it) gets SIGKILL: nothing is lost that way
# either, for the reasons above. Their children go too: a gunicorn worker left behind would
# keep the port, a pool process the task.
for _ in $(seq 50); do
    alive "$web" || alive "$worker" || break
    sleep 0.1
done
pkill -KILL -P "$web" 2>/dev/null
kill -KILL "$web" 2>/dev/null
[ -n "$worker" ] && kill -KILL -- "-$worker" 2>/dev/null
{ wait; } 2>/dev/null

if [ -n "$interrupted" ]; then
    echo "Stopped."
    exit 0
fi
echo "The web server exited; stopped the worker." >&2
exit 1
