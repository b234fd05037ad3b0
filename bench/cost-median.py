#!/usr/bin/env python3
# Medians per label of bench/cost.sh lines: python3 bench/cost-median.py FILE...
import sys,re,statistics as st
rows={}
for f in sys.argv[1:]:
    for line in open(f):
        m=re.match(r'(\S+)\s+([\d.]+) pkt/s cpu\s+([\d.]+) us/pkt an\s+([\d.]+) p99\s+([\d.]+) ms \| per pkt: cs ([\d.]+) epoll ([\d.]+) futex ([\d.]+) write ([\d.]+) writev ([\d.]+) read ([\d.]+)',line)
        if not m: continue
        v=[float(x) for x in m.groups()[1:]]
        if v[1]==0: continue
        rows.setdefault(m.group(1),[]).append(v)
names=['pkt/s','cpu','an','p99','cs','epoll','futex','write','writev','read']
for k,vs in rows.items():
    med=[st.median([v[i] for v in vs]) for i in range(len(names))]
    print(f"{k:12s} n={len(vs)} "+" ".join(f"{n}={x:.3f}" if n not in('pkt/s',) else f"{n}={x:.0f}" for n,x in zip(names,med)), " | pkt/s:", "/".join(f"{v[0]/1000:.1f}k" for v in vs), "cpu:", "/".join(f"{v[1]:.1f}" for v in vs))
