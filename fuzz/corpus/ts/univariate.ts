# univariate, equal length
@problemName tiny
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 4
@classLabel true a b
@data
1.0,2.0,3.0,4.0:a
0.5,0.25,-1,2e1:b
