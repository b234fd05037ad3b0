package spool

func childDiskFull(dir string) {}
