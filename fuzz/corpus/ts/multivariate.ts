@problemName two
@dimensions 2
@classLabel true 1 2
@data
1,2,3:4,5,6:1
7,8:9,10:2
