#!/bin/sh
# /init of the guest make-db.sh boots: runs Debian's rasdaemon recording to
# SQLite, injects machine checks with mce-inject, stops rasdaemon and prints
# its database base64-encoded between @@DB-BEGIN and @@DB-END.
export PATH=/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t tmpfs tmpfs /tmp
echo "@@BOOTED $(uname -r)"
insmod /mce_inject.ko || echo "@@ERROR insmod mce_inject"

# Which model the guest is decides the MCA bank and status of a DRAM error
# (see /work/shared/kernel-lab.md): Intel's memory controller bank 7, or
# legacy AMD's northbridge bank 4 with extended error code 8.
if grep -q GenuineIntel /proc/cpuinfo; then
	membank=7 ce=0x9c00000000000090 ue=0xbc00000000000090
else
	membank=4 ce=0x9c0000000008011b ue=0xbc0000000008011b
fi

# rasdaemon 0.6.8 polls per-CPU trace_pipe_raw, and since 6.1 poll only
# wakes when the buffer is buffer_percent (default 50) full: records would
# sit unread. rasdaemon accepts an existing instance (mkdir's EEXIST), so
# create it first and make poll wake on every record.
mkdir /sys/kernel/tracing/instances/rasdaemon
echo 0 >/sys/kernel/tracing/instances/rasdaemon/buffer_percent

rasdaemon -f -r >/tmp/rasdaemon.log 2>&1 &
pid=$!
# The database appears once rasdaemon listens (it opens it after arming).
i=0
while [ ! -s /var/lib/rasdaemon/ras-mc_event.db ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
sleep 2
echo "@@RASDAEMON pid=$pid listening after ${i}s"

d=/sys/kernel/debug/mce-inject
# inject CPU BANK STATUS ADDR MISC: one record through mce_log(); paced one
# second apart so the kernel's pending-record deduplication never merges
# two identical injections and each gets its own timestamp second.
inject() {
	echo "$1" >$d/cpu
	echo "$3" >$d/status
	echo "$4" >$d/addr
	echo "$5" >$d/misc
	echo 0 >$d/synd
	echo sw >$d/flags
	if echo "$2" >$d/bank; then
		echo "@@INJECTED cpu=$1 bank=$2 status=$3 addr=$4 misc=$5"
	else
		echo "@@ERROR inject cpu=$1 bank=$2 status=$3 addr=$4"
	fi
	sleep 1
}

# Page A: two corrected errors (a 2-per-24h page rule trips on the second).
inject 1 $membank $ce 0x2e89040 0x8c
inject 1 $membank $ce 0x2e89040 0x8c
# Page B: one corrected error (no page rule trips).
inject 1 $membank $ce 0x3a15080 0x8c
# Page C: three corrected errors (one case; the third changes nothing).
inject 1 $membank $ce 0x12341c0 0x8c
inject 1 $membank $ce 0x12341c0 0x8c
inject 1 $membank $ce 0x12341c0 0x8c
# Five corrected L0 data-cache errors (MCACOD 0x134) on CPU 2's core bank 1.
for n in 1 2 3 4 5; do inject 2 1 0x9000000000000134 0 0; done
# Uncorrected errors: one on page A (retired before it), one on a page that
# never logged a corrected error (page D).
inject 1 $membank $ue 0x2e89040 0x8c
inject 1 $membank $ue 0x4b2c000 0x8c

sleep 3
kill -TERM $pid
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 20 ]; do sleep 1; i=$((i + 1)); done
sync
echo "@@RASDAEMON-LOG-BEGIN"
cat /tmp/rasdaemon.log
echo "@@RASDAEMON-LOG-END"
echo "@@DB-BEGIN"
base64 /var/lib/rasdaemon/ras-mc_event.db
echo "@@DB-END"
poweroff -f
