<?php

/*
 * What the interop scripts share: Debian's autoloaders, the JSON configuration the Python tests
 * write, and the pieces FrameworkBundle would wire (serializer, transports, bus, listeners),
 * built by hand: no FrameworkBundle, no composer.
 *
 * The configuration file (argv[1] of every script):
 *   transports: {name: {dsn, options?, retry?: {max_retries, delay, multiplier, max_delay}}}
 *   failure_transport: name or null; routing: the transport OrderPlaced is sent to
 *   dbal_url: the DBAL connection of doctrine:// transports (Symfony's "default" connection)
 *   handled_file: where the handler appends one JSON line per attempt
 *   fail: {ids: [orderId...], below_retry: null (always) or n (while retryCount < n)}
 *   sleep_ms: how long the handler takes (so that workers sharing a queue both get some)
 */

declare(strict_types=1);

error_reporting(\E_ALL & ~\E_DEPRECATED & ~\E_USER_DEPRECATED);
date_default_timezone_set('UTC'); // Doctrine stores PHP's local time; the Python side reads UTC

const INTEROP_SHARE = '/usr/share/php';

foreach ([
    'Symfony/Component/Messenger/autoload.php',
    'Symfony/Component/Serializer/autoload.php',
    'Symfony/Component/PropertyAccess/autoload.php',
    'Symfony/Component/PropertyInfo/autoload.php',
    'Symfony/Component/EventDispatcher/autoload.php',
    'Symfony/Component/DependencyInjection/autoload.php',
    'Symfony/Component/Console/autoload.php',
    'Symfony/Component/ErrorHandler/autoload.php',
    'Doctrine/DBAL/autoload.php',
    'Psr/Container/autoload.php',
] as $autoload) {
    require_once INTEROP_SHARE.'/'.$autoload;
}
require_once __DIR__.'/src/OrderPlaced.php';
require_once __DIR__.'/src/StderrLogger.php';
require_once __DIR__.'/src/CurrentEnvelope.php';
require_once __DIR__.'/src/TraceStamp.php';

use App\Interop\CurrentEnvelope;
use App\Interop\StderrLogger;
use App\Message\OrderPlaced;
use App\Stamp\TraceStamp;
use Doctrine\DBAL\Connection as DbalConnection;
use Doctrine\DBAL\DriverManager;
use Doctrine\DBAL\Platforms\PostgreSQLPlatform;
use Symfony\Component\DependencyInjection\ServiceLocator;
use Symfony\Component\EventDispatcher\EventDispatcher;
use Symfony\Component\Messenger\Bridge\Amqp\Transport\AmqpTransportFactory;
use Symfony\Component\Messenger\Bridge\Doctrine\Transport\Connection as DoctrineConnection;
use Symfony\Component\Messenger\Bridge\Doctrine\Transport\DoctrineTransport;
use Symfony\Component\Messenger\Bridge\Doctrine\Transport\PostgreSqlConnection;
use Symfony\Component\Messenger\Bridge\Redis\Transport\RedisTransportFactory;
use Symfony\Component\Messenger\Envelope;
use Symfony\Component\Messenger\EventListener\AddErrorDetailsStampListener;
use Symfony\Component\Messenger\EventListener\SendFailedMessageForRetryListener;
use Symfony\Component\Messenger\EventListener\SendFailedMessageToFailureTransportListener;
use Symfony\Component\Messenger\Handler\HandlersLocator;
use Symfony\Component\Messenger\MessageBus;
use Symfony\Component\Messenger\Middleware\AddBusNameStampMiddleware;
use Symfony\Component\Messenger\Middleware\DispatchAfterCurrentBusMiddleware;
use Symfony\Component\Messenger\Middleware\FailedMessageProcessingMiddleware;
use Symfony\Component\Messenger\Middleware\HandleMessageMiddleware;
use Symfony\Component\Messenger\Middleware\RejectRedeliveredMessageMiddleware;
use Symfony\Component\Messenger\Middleware\SendMessageMiddleware;
use Symfony\Component\Messenger\Retry\MultiplierRetryStrategy;
use Symfony\Component\Messenger\Stamp\BusNameStamp;
use Symfony\Component\Messenger\Stamp\ErrorDetailsStamp;
use Symfony\Component\Messenger\Stamp\ReceivedStamp;
use Symfony\Component\Messenger\Stamp\RedeliveryStamp;
use Symfony\Component\Messenger\Stamp\SentToFailureTransportStamp;
use Symfony\Component\Messenger\Stamp\TransportMessageIdStamp;
use Symfony\Component\Messenger\Transport\Sender\SendersLocator;
use Symfony\Component\Messenger\Transport\Serialization\Normalizer\FlattenExceptionNormalizer;
use Symfony\Component\Messenger\Transport\Serialization\Serializer;
use Symfony\Component\Messenger\Transport\TransportInterface;
use Symfony\Component\PropertyInfo\Extractor\ReflectionExtractor;
use Symfony\Component\PropertyInfo\PropertyInfoExtractor;
use Symfony\Component\Serializer\Encoder\JsonEncoder;
use Symfony\Component\Serializer\Normalizer\ArrayDenormalizer;
use Symfony\Component\Serializer\Normalizer\DateTimeNormalizer;
use Symfony\Component\Serializer\Normalizer\ObjectNormalizer;
use Symfony\Component\Serializer\Serializer as SymfonySerializer;

const INTEROP_BUS = 'messenger.bus.default';
const INTEROP_TIME_FORMAT = 'Y-m-d\TH:i:s.uP';

/** The configuration file named by argv[1]. */
function interop_config(array $argv): array
{
    if (!isset($argv[1]) || !is_file($argv[1])) {
        fwrite(\STDERR, "usage: php {$argv[0]} CONFIG.json ...\n");
        exit(2);
    }

    return json_decode((string) file_get_contents($argv[1]), true, 512, \JSON_THROW_ON_ERROR);
}

/** `--name value` options after the configuration file. */
function interop_options(array $argv, array $defaults): array
{
    $options = $defaults;
    for ($i = 2; $i < \count($argv); ++$i) {
        $name = substr($argv[$i], 2);
        if (!str_starts_with($argv[$i], '--') || !\array_key_exists($name, $defaults)) {
            fwrite(\STDERR, "unknown option {$argv[$i]}\n");
            exit(2);
        }
        $options[$name] = $argv[++$i] ?? '';
    }

    return $options;
}

/**
 * Symfony's Serializer-based JSON serializer, with the normalizers FrameworkBundle registers
 * that matter here (FlattenExceptionNormalizer for ErrorDetailsStamp, property types read by
 * reflection as its property_info service does).
 */
function interop_serializer(): Serializer
{
    $types = new PropertyInfoExtractor([], [new ReflectionExtractor()]);
    $normalizers = [
        new FlattenExceptionNormalizer(),
        new DateTimeNormalizer(),
        new ArrayDenormalizer(),
        new ObjectNormalizer(null, null, null, $types),
    ];

    return new Serializer(new SymfonySerializer($normalizers, [new JsonEncoder()]));
}

/** @return array<string, TransportInterface> every configured transport, by name */
function interop_transports(array $config, Serializer $serializer): array
{
    $dbal = null;
    $transports = [];
    foreach ($config['transports'] as $name => $transport) {
        $dsn = $transport['dsn'];
        $options = $transport['options'] ?? [];
        if (str_starts_with($dsn, 'redis://')) {
            $options += ['consumer' => sprintf('php-%d-%s', getmypid(), $name)];
            $transports[$name] = (new RedisTransportFactory())->createTransport($dsn, $options, $serializer);
        } elseif (str_starts_with($dsn, 'amqp://')) {
            // php-amqp: AmqpTransport polls its queues with basic.get.
            $transports[$name] = (new AmqpTransportFactory())->createTransport($dsn, $options, $serializer);
        } elseif (str_starts_with($dsn, 'doctrine://')) {
            // What DoctrineTransportFactory does with the registry's "default" connection.
            // Symfony's PostgreSQL consumer looks for due delayed messages only every
            // check_delayed_interval (60 s by default) unless notified: the tests' delays are
            // seconds.
            $options += ['check_delayed_interval' => 1000];
            $dbal = $dbal ?? DriverManager::getConnection(['url' => $config['dbal_url']]);
            $transports[$name] = interop_doctrine_transport($dsn, $options, $dbal, $serializer);
        } else {
            throw new \InvalidArgumentException("unsupported DSN for transport $name");
        }
    }

    return $transports;
}

function interop_doctrine_transport(string $dsn, array $options, DbalConnection $dbal, Serializer $serializer): DoctrineTransport
{
    $configuration = PostgreSqlConnection::buildConfiguration($dsn, $options);
    if ($dbal->getDatabasePlatform() instanceof PostgreSQLPlatform) {
        $connection = new PostgreSqlConnection($configuration, $dbal);
    } else {
        $connection = new DoctrineConnection($configuration, $dbal);
    }

    return new DoctrineTransport($connection, $serializer);
}

/** The default bus with FrameworkBundle's default middleware. */
function interop_bus(array $config, array $transports, EventDispatcher $dispatcher, ?callable $handler): MessageBus
{
    $senders = new ServiceLocator(array_map(static fn ($t) => static fn () => $t, $transports));
    $routing = isset($config['routing']) ? [OrderPlaced::class => [$config['routing']]] : [];
    $handlers = null === $handler ? [] : [OrderPlaced::class => [$handler]];

    return new MessageBus([
        new AddBusNameStampMiddleware(INTEROP_BUS),
        new RejectRedeliveredMessageMiddleware(), // acts on AMQP's redelivered flag only
        new DispatchAfterCurrentBusMiddleware(),
        new FailedMessageProcessingMiddleware(),
        new CurrentEnvelope(),
        new SendMessageMiddleware(new SendersLocator($routing, $senders), $dispatcher),
        new HandleMessageMiddleware(new HandlersLocator($handlers)),
    ]);
}

/** The worker listeners FrameworkBundle registers: retry, error details, failure transport. */
function interop_listeners(array $config, array $transports, EventDispatcher $dispatcher, StderrLogger $logger): void
{
    $senders = [];
    $strategies = [];
    $failure = [];
    foreach ($config['transports'] as $name => $transport) {
        $senders[$name] = static fn () => $transports[$name];
        $retry = ($transport['retry'] ?? []) + ['max_retries' => 3, 'delay' => 1000, 'multiplier' => 2, 'max_delay' => 0];
        $strategy = new MultiplierRetryStrategy($retry['max_retries'], $retry['delay'], $retry['multiplier'], $retry['max_delay']);
        $strategies[$name] = static fn () => $strategy;
        $failureName = $config['failure_transport'] ?? null;
        if (null !== $failureName && $failureName !== $name) {
            $failure[$name] = static fn () => $transports[$failureName];
        }
    }
    $dispatcher->addSubscriber(new SendFailedMessageForRetryListener(new ServiceLocator($senders), new ServiceLocator($strategies), $logger, $dispatcher));
    $dispatcher->addSubscriber(new AddErrorDetailsStampListener());
    $dispatcher->addSubscriber(new SendFailedMessageToFailureTransportListener(new ServiceLocator($failure), $logger));
}

/** The handler: records each attempt as a JSON line; fails for the configured ids. */
function interop_handler(array $config): callable
{
    $file = $config['handled_file'];
    $failIds = array_flip($config['fail']['ids'] ?? []);
    $belowRetry = $config['fail']['below_retry'] ?? null;
    $sleep = (int) (1000 * ($config['sleep_ms'] ?? 0));

    return static function (OrderPlaced $message) use ($file, $failIds, $belowRetry, $sleep): void {
        if ($sleep > 0) {
            usleep($sleep);
        }
        $envelope = CurrentEnvelope::$envelope;
        $redelivery = $envelope ? $envelope->last(RedeliveryStamp::class) : null;
        $retryCount = $redelivery ? $redelivery->getRetryCount() : 0;
        $fail = isset($failIds[$message->getOrderId()]) && (null === $belowRetry || $retryCount < $belowRetry);
        $received = $envelope ? $envelope->last(ReceivedStamp::class) : null;
        $busName = $envelope ? $envelope->last(BusNameStamp::class) : null;
        $trace = $envelope ? $envelope->last(TraceStamp::class) : null;
        $record = [
            'side' => 'php',
            'pid' => getmypid(),
            'at' => microtime(true),
            'outcome' => $fail ? 'failed' : 'handled',
            'orderId' => $message->getOrderId(),
            'amount' => $message->getAmount(),
            'placedAt' => $message->getPlacedAt()->format(INTEROP_TIME_FORMAT),
            'retryCount' => $retryCount,
            'receiver' => $received ? $received->getTransportName() : null,
            'busName' => $busName ? $busName->getBusName() : null,
            'traceId' => $trace ? $trace->getTraceId() : null,
            'stamps' => $envelope ? array_map('count', $envelope->all()) : [],
        ];
        file_put_contents($file, json_encode($record, \JSON_UNESCAPED_SLASHES)."\n", \FILE_APPEND | \LOCK_EX);
        if ($fail) {
            throw new \RuntimeException(sprintf('order %s refused by PHP', $message->getOrderId()), 42);
        }
    };
}

/** What a listing shows of one envelope (messenger:failed:show's facts, as JSON). */
function interop_describe(Envelope $envelope): array
{
    $message = $envelope->getMessage();
    $id = $envelope->last(TransportMessageIdStamp::class);
    $redelivery = $envelope->last(RedeliveryStamp::class);
    $sent = $envelope->last(SentToFailureTransportStamp::class);
    $busName = $envelope->last(BusNameStamp::class);
    $errors = [];
    foreach ($envelope->all(ErrorDetailsStamp::class) as $stamp) {
        $flat = $stamp->getFlattenException();
        $errors[] = [
            'exceptionClass' => $stamp->getExceptionClass(),
            'exceptionCode' => $stamp->getExceptionCode(),
            'exceptionMessage' => $stamp->getExceptionMessage(),
            'flattenException' => $flat ? ['class' => $flat->getClass(), 'message' => $flat->getMessage()] : null,
        ];
    }
    $description = [
        'id' => $id ? (string) $id->getId() : null,
        'class' => \get_class($message),
        'retryCount' => $redelivery ? $redelivery->getRetryCount() : 0,
        'redeliveredAt' => $redelivery ? $redelivery->getRedeliveredAt()->format(INTEROP_TIME_FORMAT) : null,
        'originalReceiver' => $sent ? $sent->getOriginalReceiverName() : null,
        'busName' => $busName ? $busName->getBusName() : null,
        'errors' => $errors,
        'stamps' => array_map('count', $envelope->all()),
    ];
    if ($message instanceof OrderPlaced) {
        $description += [
            'orderId' => $message->getOrderId(),
            'amount' => $message->getAmount(),
            'placedAt' => $message->getPlacedAt()->format(INTEROP_TIME_FORMAT),
        ];
    }

    return $description;
}
