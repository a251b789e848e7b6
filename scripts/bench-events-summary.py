#!/usr/bin/env python3
# Summarises the JSON reports and size files that scripts/bench-events writes:
# scripts/bench-events-summary.py [OUT]
import json, glob, os
import sys
out=sys.argv[1] if len(sys.argv) > 1 else '/tmp/merklog-bench-events'
for f in sorted(glob.glob(out+'/*.json')):
    try:
        r=json.load(open(f))
    except Exception as e:
        print(os.path.basename(f), 'unreadable', e); continue
    ops={o['op']:o for o in r['ops']}
    line=[os.path.basename(f)]
    if r.get('prefill'): line.append('prefill %.0f/s (%d)'%(r['prefill']['entries_per_s'], r['prefill']['entries']))
    for name,o in ops.items():
        line.append('%s %.0f items/s p50 %.2f p99 %.2f ms errs %s'%(name,o['items_per_s'],o['latency_ms']['p50'],o['latency_ms']['p99'],o['errors'] or '-'))
    if r.get('event_leaf_bytes_mean'): line.append('leaf %.0f B'%r['event_leaf_bytes_mean'])
    line.append('size %d->%d'%(r['log']['size_before'],r['log']['size_after']))
    for ph,x in r.get('rss',{}).items(): line.append('rss %s peak %.0f MiB'%(ph,x['peak_mib']))
    print(' | '.join(line))
for f in sorted(glob.glob(out+'/*.tables'))+sorted(glob.glob(out+'/*.db'))+sorted(glob.glob(out+'/*.files')):
    print('==',os.path.basename(f)); print(open(f).read().strip())
