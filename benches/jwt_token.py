"""Writes DIR/jwks.json (one P-256 key made by the openssl CLI) and prints an ES256 token for
benches/callgrind.sh: issuer https://auth.example, audience web, valid for a day."""
import base64, json, subprocess, sys, time
d = sys.argv[1]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode()
subprocess.run(['openssl','ecparam','-name','prime256v1','-genkey','-noout','-out',f'{d}/ec.pem'],check=True)
spki = subprocess.run(['openssl','ec','-in',f'{d}/ec.pem','-pubout','-outform','DER'],check=True,capture_output=True).stdout
pt = spki[-65:]
json.dump({'keys':[{'kty':'EC','crv':'P-256','kid':'k1','x':b64(pt[1:33]),'y':b64(pt[33:])}]}, open(f'{d}/jwks.json','w'))
h = b64(json.dumps({'alg':'ES256','kid':'k1','typ':'JWT'}).encode())
p = b64(json.dumps({'iss':'https://auth.example','sub':'alice','aud':'web','exp':int(time.time())+86400,'groups':['dev','ops']}).encode())
der = subprocess.run(['openssl','dgst','-sha256','-sign',f'{d}/ec.pem'],input=f'{h}.{p}'.encode(),check=True,capture_output=True).stdout
def ints(der):
    at=2; out=b''
    for _ in range(2):
        n=der[at+1]; i=der[at+2:at+2+n][-32:]; out+=b'\0'*(32-len(i))+i; at+=2+n
    return out
print(f'{h}.{p}.{b64(ints(der))}')
