#!/usr/bin/python3
"""Write a data file of random x [T, B, I] and y [T, B, O] (uniform in [-1, 1], F32, seed 1), stdlib only.

usage: random_data.py OUT.safetensors T B I O
"""
import sys, random, struct, json
from array import array
T,B,I,O=map(int,sys.argv[2:6])
r=random.Random(1)
x=array('f',(r.uniform(-1,1) for _ in range(T*B*I)))
y=array('f',(r.uniform(-1,1) for _ in range(T*B*O)))
h={"x":{"dtype":"F32","shape":[T,B,I],"data_offsets":[0,len(x)*4]},
   "y":{"dtype":"F32","shape":[T,B,O],"data_offsets":[len(x)*4,len(x)*4+len(y)*4]}}
hb=json.dumps(h).encode(); hb+=b" "*(-len(hb)%8)
with open(sys.argv[1],'wb') as f:
    f.write(struct.pack('<Q',len(hb))); f.write(hb); f.write(x.tobytes()); f.write(y.tobytes())
