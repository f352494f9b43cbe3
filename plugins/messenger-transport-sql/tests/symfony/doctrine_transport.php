<?php

/*
 * Symfony Messenger's Doctrine transport on one table, for the SQL transport's tests.
 *
 * Runs with Debian's packages (php-symfony-messenger, php-symfony-doctrine-messenger,
 * php-symfony-serializer, php-doctrine-dbal), no composer:
 *
 *   php doctrine_transport.php DSN TABLE COMMAND [ARGUMENT] [option=value ...]
 *
 * DSN: postgresql://user[:password]@host:port/database or mysql://... (the tests' DSNs).
 * COMMAND:
 *   setup              the transport's setup(), what `messenger:setup-transports` runs
 *   send N             send N Ping messages (id 0..N-1); option delay=MS adds a DelayStamp
 *   receive N          get, ack and print (one JSON line each) N messages; exit 1 if fewer
 *                      arrive within timeout=SECONDS (default 10)
 *   wait N             like receive, printing "listening" once two gets found the queue
 *                      empty (a PostgreSQL worker with use_notify then waits on LISTEN)
 * Other options (queue_name, use_notify, get_notify_timeout, check_delayed_interval,
 * redeliver_timeout) go to the transport, as in a Symfony application's messenger.yaml.
 */

namespace MessengerTests;

require_once 'Symfony/Component/Messenger/autoload.php';
require_once 'Symfony/Component/Serializer/autoload.php';
require_once 'Symfony/Component/PropertyAccess/autoload.php';
require_once 'Doctrine/DBAL/autoload.php';

use Doctrine\DBAL\DriverManager;
use Doctrine\DBAL\Platforms\PostgreSQLPlatform;
use Symfony\Component\Messenger\Bridge\Doctrine\Transport\Connection;
use Symfony\Component\Messenger\Bridge\Doctrine\Transport\DoctrineTransport;
use Symfony\Component\Messenger\Bridge\Doctrine\Transport\PostgreSqlConnection;
use Symfony\Component\Messenger\Envelope;
use Symfony\Component\Messenger\Stamp\DelayStamp;
use Symfony\Component\Messenger\Transport\Serialization\Serializer;
use Symfony\Component\Serializer\Encoder\JsonEncoder;
use Symfony\Component\Serializer\Normalizer\ArrayDenormalizer;
use Symfony\Component\Serializer\Normalizer\DateTimeNormalizer;
use Symfony\Component\Serializer\Normalizer\ObjectNormalizer;
use Symfony\Component\Serializer\Serializer as SymfonySerializer;

/** The tests' message (Python registers it under this class name). */
class Ping
{
    public int $id = 0;
    public string $text = '';
}

function fail(string $message): never
{
    fwrite(STDERR, $message."\n");
    exit(2);
}

function dbal_params(string $dsn): array
{
    $parts = parse_url($dsn);
    if (false === $parts || !isset($parts['scheme'], $parts['host'])) {
        fail('cannot parse the DSN');
    }
    $driver = str_starts_with($parts['scheme'], 'postgres') ? 'pdo_pgsql' : 'pdo_mysql';
    $params = [
        'driver' => $driver,
        'host' => $parts['host'],
        'port' => $parts['port'] ?? null,
        'user' => isset($parts['user']) ? urldecode($parts['user']) : null,
        'password' => isset($parts['pass']) ? urldecode($parts['pass']) : null,
        'dbname' => ltrim($parts['path'] ?? '', '/'),
    ];
    if ('pdo_mysql' === $driver) {
        $params['charset'] = 'utf8mb4';
    }

    return $params;
}

[$script, $dsn, $table, $command] = array_pad(\array_slice($argv, 0, 4), 4, null);
if (null === $command) {
    fail("usage: php $script DSN TABLE COMMAND [N] [option=value ...]");
}
$count = 0;
$options = [];
foreach (\array_slice($argv, 4) as $argument) {
    if (str_contains($argument, '=')) {
        [$key, $value] = explode('=', $argument, 2);
        $options[$key] = $value;
    } else {
        $count = (int) $argument;
    }
}
$delay = (int) ($options['delay'] ?? 0);
$timeout = (float) ($options['timeout'] ?? 10);
$useNotify = filter_var($options['use_notify'] ?? 'true', \FILTER_VALIDATE_BOOLEAN);
unset($options['delay'], $options['timeout'], $options['use_notify']);
foreach (['get_notify_timeout', 'check_delayed_interval', 'redeliver_timeout'] as $key) {
    if (isset($options[$key])) {
        $options[$key] = (int) $options[$key];
    }
}

$dbal = DriverManager::getConnection(dbal_params($dsn));
$configuration = ['table_name' => $table, 'auto_setup' => false] + $options;
$connection = $useNotify && $dbal->getDatabasePlatform() instanceof PostgreSQLPlatform
    ? new PostgreSqlConnection($configuration, $dbal)
    : new Connection($configuration, $dbal);
// Serializer::create() without its XML encoder (which needs PHP's xml extension): the JSON
// that Symfony's Serializer-based transport serializer writes.
$normalizers = [new DateTimeNormalizer(), new ArrayDenormalizer(), new ObjectNormalizer()];
$serializer = new Serializer(new SymfonySerializer($normalizers, [new JsonEncoder()]));
$transport = new DoctrineTransport($connection, $serializer);

switch ($command) {
    case 'setup':
        $transport->setup();
        break;
    case 'send':
        for ($id = 0; $id < $count; ++$id) {
            $ping = new Ping();
            $ping->id = $id;
            $ping->text = "from PHP $id";
            $transport->send(new Envelope($ping, $delay > 0 ? [new DelayStamp($delay)] : []));
        }
        break;
    case 'receive':
    case 'wait':
        $received = 0;
        $empty = 'receive' === $command ? 2 : 0;
        $deadline = microtime(true) + $timeout;
        while ($received < $count && microtime(true) < $deadline) {
            $envelopes = iterator_to_array($transport->get());
            if (!$envelopes && 2 === ++$empty) {
                // The first empty get() found the queue empty, the second one LISTENed
                // (PostgreSQL with use_notify): from now on a notification wakes us up.
                echo "listening\n";
                flush();
            }
            foreach ($envelopes as $envelope) {
                $message = $envelope->getMessage();
                echo json_encode(['class' => $message::class, 'id' => $message->id, 'text' => $message->text]), "\n";
                flush();
                $transport->ack($envelope);
                ++$received;
            }
        }
        exit($received >= $count ? 0 : 1);
    default:
        fail("unknown command $command");
}
