#!/usr/bin/env bash
# `make run`'s process handling: the web server and the worker side by side, stopped together.
#
# usage: supervise.sh PARENT_PID WEB_COMMAND WORKER_COMMAND
#
# Stops both when Ctrl-C (SIGINT), SIGTERM or a hangup (the terminal closed) reaches it, when
# either process exits, or when PARENT_PID (the make recipe's shell) is gone. A stop asked for
# prints "Stopped." and exits 0; a process that exited on its own makes it exit 1.
#
# Ctrl-C reaches the web server and the worker too (one process group): gunicorn stops at
# once; Celery starts a warm shutdown, which may wait for a long chunk task, so after
# RUN_STOP_GRACE seconds (default 1) the worker gets SIGQUIT, a cold shutdown. That loses
# nothing: tasks are acknowledged late, so the interrupted one is delivered again on the next
# start, and a chunk's work commits in one transaction with its done mark.
set -u
parent=$1 web_command=$2 worker_command=$3
grace_tenths=$(( ${RUN_STOP_GRACE:-1} * 10 ))

interrupted=
trap 'interrupted=1' INT TERM HUP

alive() { kill -0 "$1" 2>/dev/null; }

$worker_command &
worker=$!
$web_command &
web=$!

# `wait` on a background sleep returns as soon as a trapped signal arrives.
while [ -z "$interrupted" ] && alive "$web" && alive "$worker" && alive "$parent"; do
    sleep 1 &
    wait $! 2>/dev/null
done
# Ctrl-C reaches the children in the same instant as this shell: one of them may exit before
# the trap above has run. Look again before calling it a crash.
if [ -z "$interrupted" ]; then
    sleep 0.5 &
    wait $! 2>/dev/null
fi
alive "$parent" || interrupted=1

kill -TERM "$web" "$worker" 2>/dev/null
for _ in $(seq "$grace_tenths"); do
    alive "$web" || alive "$worker" || break
    sleep 0.1
done
kill -QUIT "$web" "$worker" 2>/dev/null
# A cold shutdown that hangs (a task that ignores it) gets SIGKILL: nothing is lost that way
# either, for the reasons above. Their children go too: a gunicorn worker left behind would
# keep the port, a pool process the task.
for _ in $(seq 50); do
    alive "$web" || alive "$worker" || break
    sleep 0.1
done
pkill -KILL -P "$web" 2>/dev/null
pkill -KILL -P "$worker" 2>/dev/null
kill -KILL "$web" "$worker" 2>/dev/null
{ wait; } 2>/dev/null

if [ -n "$interrupted" ]; then
    echo "Stopped."
    exit 0
fi
echo "The web server or the worker exited; stopped the other." >&2
exit 1
