#!/usr/bin/env bash
# Builds a small sample volume store with real tools (used by the demo):
#   OUT/win01/win01.vmdk (+ win01-000001.vmdk snapshot delta): GPT disk, EFI System partition
#        and an NTFS "Basic data" partition with a Windows-like tree (monolithicSparse VMDK)
#   OUT/lin01/lin01.vmdk: MBR disk with an ext4 partition holding a Linux-like tree (streamOptimized VMDK)
#   OUT/sources/{win01,lin01}: the source trees the guests' files came from
# Usage: scripts/make-sample-store.sh OUT
set -euo pipefail
OUT=${1:?usage: make-sample-store.sh OUT}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'umount "$WORK/mnt" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export TZ=UTC LC_ALL=C.UTF-8

# --- the Windows-like VM: NTFS on GPT --------------------------------------------------------
W=$WORK/win-src
mkdir -p "$W/Users/ana/Documents" "$W/Windows/System32/drivers/etc" "$W/Program Files/App"
seq 1 2000 | sed 's/.*/Quarterly report, draft 3/' > "$W/Users/ana/Documents/report.docx"
head -c 3000000 /dev/urandom > "$W/Users/ana/Documents/photo.jpg"
printf '127.0.0.1 localhost\n' > "$W/Windows/System32/drivers/etc/hosts"
printf 'Ünïcødé names work too\n' > "$W/Users/ana/Documents/résumé.txt"
head -c 200000 /dev/urandom > "$W/Program Files/App/app.dll"

truncate -s 80M "$WORK/win.raw"
printf 'label: gpt\nsize=8M, type=U, name="EFI system partition"\ntype=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="Basic data partition"\n' | sfdisk -q "$WORK/win.raw"
start=$(sfdisk --json "$WORK/win.raw" | jq '.partitiontable.partitions[1].start')
size=$(sfdisk --json "$WORK/win.raw" | jq '.partitiontable.partitions[1].size')
truncate -s $((size * 512)) "$WORK/ntfs.img"
mkntfs -q -F -Q -c 4096 -p "$start" -H 255 -S 63 -L WINDOWS "$WORK/ntfs.img" >/dev/null 2>&1
mkdir -p "$WORK/mnt"
ntfs-3g -o streams_interface=windows "$WORK/ntfs.img" "$WORK/mnt"
cp -r "$W/." "$WORK/mnt/"
printf 'downloaded from the internet\n' > "$WORK/mnt/Users/ana/Documents/report.docx:Zone.Identifier"
umount "$WORK/mnt"
dd if="$WORK/ntfs.img" of="$WORK/win.raw" bs=512 seek="$start" conv=notrunc status=none
mkdir -p "$OUT/win01"
qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$WORK/win.raw" "$OUT/win01/win01.vmdk"
# a snapshot: the VM keeps writing into a delta disk on top of the base
qemu-img create -q -f vmdk -b win01.vmdk -F vmdk "$OUT/win01/win01-000001.vmdk"

# --- the Linux VM: ext4 on MBR ---------------------------------------------------------------
L=$WORK/lin-src
mkdir -p "$L/etc" "$L/home/bob" "$L/var/log"
printf 'lin01\n' > "$L/etc/hostname"
printf 'remember the milk\n' > "$L/home/bob/notes.txt"
for i in $(seq 1 500); do echo "Nov 23 10:00:$((i % 60)) lin01 kernel: line $i"; done > "$L/var/log/syslog"
ln -s ../home/bob/notes.txt "$L/etc/motd"
truncate -s 64M "$WORK/lin.raw"
printf 'label: dos\n,,83\n' | sfdisk -q "$WORK/lin.raw"
start=$(sfdisk --json "$WORK/lin.raw" | jq '.partitiontable.partitions[0].start')
size=$(sfdisk --json "$WORK/lin.raw" | jq '.partitiontable.partitions[0].size')
mkfs.ext4 -q -F -L linroot -d "$L" "$WORK/ext4.img" $((size / 2))k
dd if="$WORK/ext4.img" of="$WORK/lin.raw" bs=512 seek="$start" conv=notrunc status=none
mkdir -p "$OUT/lin01"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$WORK/lin.raw" "$OUT/lin01/lin01.vmdk"
# the source trees, for tests that compare what vdbak reads with what went in
mkdir -p "$OUT/sources"
cp -a "$W" "$OUT/sources/win01"
cp -a "$L" "$OUT/sources/lin01"
touch "$OUT/.done"
