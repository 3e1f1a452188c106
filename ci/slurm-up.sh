#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on this machine (Debian/Ubuntu, root only), with
# accounting, so that `snakemake --profile profiles/slurm-local` runs the DAG as real SLURM jobs.
#
# Why accounting: Snakemake's slurm executor polls `sacct`; without slurmdbd it waits forever.
# Idempotent: every step checks first (installed packages, keys, configs, running daemons,
# accounting entries), so a second run only confirms that the node is idle.
#
# Daemons are started directly (no systemd: CI containers have none), in the order
# munged -> mariadb -> slurmdbd -> slurmctld -> slurmd. Stop them with ci/slurm-down.sh.
#
# Exit codes: 0 cluster up and node idle; 2 not root; 3 packages missing and not installable;
# 4 a daemon or the node did not come up (logs under /var/log/slurm/).
#
# The names below are what profiles/slurm-local/config.yaml expects.
set -euo pipefail

CLUSTER=vislaw
ACCOUNT=vislaw
PARTITION=local
# Fake GPUs: SLURM schedules them as generic resources (gres) like real ones; each "device"
# is a symlink to /dev/null (Slurm 22.05 drops a gres entry without File=).
GPU_MODEL=a100
GPU_COUNT=2
GPU_DEV_DIR=/var/spool/slurmd/fake-gpus
DB_NAME=slurm_acct_db
DB_USER=slurm
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

ETC=/etc/slurm
LOGDIR=/var/log/slurm
APT_LOG=/var/log/slurm-up-apt.log
HOST=$(hostname -s)

say() { echo "slurm-up: $*"; }
die() {
    local code=$1
    shift
    echo "slurm-up: ERROR: $*" >&2
    exit "$code"
}

# Wait up to $1 seconds for the command "$2..." to succeed.
wait_for() {
    local seconds=$1
    shift
    local i
    for ((i = 0; i < seconds * 4; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    return 1
}

[ "$(id -u)" -eq 0 ] || die 2 "must run as root (it installs packages and starts system daemons)"

# --- packages ---------------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null ||
        die 3 "packages missing (${missing[*]}) and apt-get not found: install SLURM yourself"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Daemons are started below, not by the packages' init scripts.
    apt_failed() {
        tail -n 5 "$APT_LOG" >&2
        die 3 "$1; full log: $APT_LOG"
    }
    apt-get update -q >"$APT_LOG" 2>&1 ||
        apt_failed "apt-get update failed (no network or no Debian mirror?)"
    apt-get install -y -q "${missing[@]}" >>"$APT_LOG" 2>&1 ||
        apt_failed "apt-get install ${missing[*]} failed"
fi

install -d -m 755 "$ETC" "$LOGDIR" /var/spool/slurmctld /var/spool/slurmd "$GPU_DEV_DIR"
for ((i = 0; i < GPU_COUNT; i++)); do ln -sfn /dev/null "$GPU_DEV_DIR/gpu$i"; done

# Write $1 with mode $2 from stdin when its content changed; prints "changed" if it did.
put_file() {
    local path=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        return 0
    fi
    install -m "$mode" "$tmp" "$path"
    rm -f "$tmp"
    echo changed
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- munge ------------------------------------------------------------------------------------
install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 sh -c 'munge -n | unmunge' || die 4 "munged did not start; see /var/log/munge/"
fi

# --- MariaDB for slurmdbd ---------------------------------------------------------------------
DB_ADMIN=$(command -v mariadb-admin || command -v mysqladmin)
DB_CLIENT=$(command -v mariadb || command -v mysql)
if ! "$DB_ADMIN" ping >/dev/null 2>&1; then
    say "starting mariadb"
    install -d -o mysql -g mysql -m 755 /run/mysqld
    setsid mysqld_safe --user=mysql >"$LOGDIR/mariadb.out" 2>&1 </dev/null &
    wait_for 60 "$DB_ADMIN" ping || die 4 "mariadb did not start; see $LOGDIR/mariadb.out"
fi

# The database password lives only in slurmdbd.conf (mode 600); keep it across runs.
DB_PASS=$(sed -n 's/^StoragePass=//p' "$ETC/slurmdbd.conf" 2>/dev/null || true)
[ -n "$DB_PASS" ] || DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
"$DB_CLIENT" -u root <<SQL || die 4 "could not create the accounting database"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL

# --- configuration ----------------------------------------------------------------------------
CPUS=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
# A container's memory limit (cgroup v2 or v1) caps what the node may promise.
for limit_file in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
    if [ -r "$limit_file" ]; then
        limit=$(cat "$limit_file")
        if [ "$limit" != max ] && [ $((limit / 1048576)) -lt "$mem_mb" ]; then
            mem_mb=$((limit / 1048576))
        fi
    fi
done
# Leave 10% for the daemons and the submitting Snakemake.
REAL_MEM=$((mem_mb * 9 / 10))

changed=$(
    put_file "$ETC/slurmdbd.conf" 600 <<EOF
# Written by ci/slurm-up.sh: accounting for the single-node test cluster.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=$LOGDIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=$DB_NAME
StorageUser=$DB_USER
StoragePass=$DB_PASS
EOF
)
dbd_changed=$changed

# NodeAddr/SlurmctldHost point at 127.0.0.1 so that the host name need not resolve.
# CPUs only (no sockets/cores/threads), so that each CPU is a schedulable core: a job asking
# for one CPU gets one, also on hyper-threaded machines.
changed=$(
    put_file "$ETC/slurm.conf" 644 <<EOF
# Written by ci/slurm-up.sh: a single-node cluster for testing the Snakemake SLURM profile.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
# GPUs as generic resources, recorded per job so that sacct shows the allocation (AllocTRES).
GresTypes=gpu
AccountingStorageTRES=gres/gpu,gres/gpu:$GPU_MODEL
# Snakemake puts the rule and wildcards in the job comment: keep it for sacct -o Comment.
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
MinJobAge=300
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEM Gres=gpu:$GPU_MODEL:$GPU_COUNT State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
conf_changed=$changed
changed=$(
    put_file "$ETC/gres.conf" 644 <<EOF
# Written by ci/slurm-up.sh: $GPU_COUNT fake $GPU_MODEL GPUs (symlinks to /dev/null).
NodeName=$HOST Name=gpu Type=$GPU_MODEL File=$GPU_DEV_DIR/gpu[0-$((GPU_COUNT - 1))]
EOF
)
conf_changed=$conf_changed$changed
[ -z "$dbd_changed$conf_changed" ] || say "configuration written to $ETC (CPUs=$CPUS RealMemory=$REAL_MEM MB)"

# Stop a daemon via its pid file (only the process we started, by id).
stop_pid() {
    local pidfile=$1 pid
    if pid_alive "$pidfile"; then
        pid=$(cat "$pidfile")
        kill "$pid"
        wait_for 20 sh -c "! kill -0 $pid 2>/dev/null" || true
    fi
}

# --- slurmdbd and the accounting entries ------------------------------------------------------
if [ -n "$dbd_changed" ]; then stop_pid /run/slurmdbd.pid; fi
if ! pid_alive /run/slurmdbd.pid; then
    say "starting slurmdbd"
    /usr/sbin/slurmdbd
fi
wait_for 30 sacctmgr -n show cluster || die 4 "slurmdbd does not answer; see $LOGDIR/slurmdbd.log"

if [ -z "$(sacctmgr -n -P show cluster "$CLUSTER" format=cluster)" ]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if [ -z "$(sacctmgr -n -P show account "$ACCOUNT" format=account)" ]; then
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" \
        description="vislaw CI" organization=vislaw >/dev/null
fi
users=(root)
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then users+=("$SUDO_USER"); fi
for user in "${users[@]}"; do
    if [ -z "$(sacctmgr -n -P show assoc where user="$user" account="$ACCOUNT" format=user)" ]; then
        sacctmgr -i add user "$user" account="$ACCOUNT" defaultaccount="$ACCOUNT" >/dev/null
    fi
done

# --- slurmctld and slurmd ---------------------------------------------------------------------
if [ -n "$conf_changed" ]; then
    stop_pid /run/slurmd.pid
    stop_pid /run/slurmctld.pid
fi
if ! pid_alive /run/slurmctld.pid; then
    say "starting slurmctld"
    /usr/sbin/slurmctld
fi
wait_for 30 scontrol ping || die 4 "slurmctld does not answer; see $LOGDIR/slurmctld.log"
if ! pid_alive /run/slurmd.pid; then
    say "starting slurmd"
    /usr/sbin/slurmd
fi

node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1; }
node_ready() { case "$(node_state)" in idle | mixed | allocated) return 0 ;; esac; return 1; }
if ! wait_for 30 node_ready; then
    # A node left down or drained by an earlier run returns to service here.
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    wait_for 15 node_ready ||
        die 4 "node $HOST is '$(node_state)', not idle; see $LOGDIR/slurmd.log and slurmctld.log"
fi
say "cluster '$CLUSTER' up: node $HOST $(node_state) with $GPU_COUNT fake $GPU_MODEL GPUs, partition '$PARTITION', account '$ACCOUNT'"
