import socket, sys, time
port=int(sys.argv[1]); n=int(sys.argv[2]); socks=[]
for i in range(n):
    s=socket.create_connection(('127.0.0.1',port)); s.sendall(b'GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n')
    buf=b''
    while b'world' not in buf.lower() and len(buf)<400:
        d=s.recv(4096)
        if not d: break
        buf+=d
    socks.append(s)
time.sleep(2)
print("held", len(socks))
# keep open until killed
time.sleep(float(sys.argv[3]))
